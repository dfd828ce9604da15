"""Every 2D-TAN hyper-parameter, serialisable for checkpoints (defaults: the released Charades-STA
"Pool" recipe, ``experiments/charades/2D-TAN-16x16-K5L8-pool.yaml``; docs/tan2d.md cites each value)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from higround.errors import ConfigError
from higround.models.family import FamilyConfigBase, check_at_least, check_loss_weights
from higround.models.sscs import LOSS_TERMS as SSCS_TERMS
from higround.models.sscs import SscsConfig, sscs_section
from higround.models.tan2d.temporal_map import sparse_layout

# Names of the loss terms returned by :class:`higround.losses.tan2d.Tan2DLoss` (besides "total"); the
# keys accepted in :attr:`Tan2DConfig.loss_weights`. The Sscs terms (lambda_1, lambda_2 of Sscs eq. 1)
# are returned in training when the config has an ``sscs`` section (and that term is switched on).
LOSS_TERMS = ("bce", *SSCS_TERMS)
# How the 2D map's cells are filled from the clips: stacked max-pools ("Pool", SparsePropMaxPool) or
# stacked 1-D convolutions ("Conv", SparsePropConv).
PROPOSALS = ("pool", "conv")


@dataclass
class Tan2DConfig(FamilyConfigBase):
    """2D-TAN hyper-parameters (Zhang et al., AAAI 2020, as the released code builds the model).

    Attributes:
        video_dim: ``D_v``, the clip feature size (4096 Charades VGG / TACoS C3D, 500 ActivityNet C3D,
            1024 Charades I3D).
        word_dim: the word-vector size (GloVe 6B: 300 in the paper).
        num_clips: clips every video is resampled to before the frame pool (``NUM_SAMPLE_CLIPS``, 256).
        pool_stride: ``TARGET_STRIDE``: the frame pool averages this many clips into one map clip, so
            the map is ``N x N`` with ``N = num_clips / pool_stride`` (16 Charades, 64 ActivityNet,
            128 TACoS).
        hidden_dim: channels of the clips, the map and the map convolutions (512).
        text_hidden_dim: the sentence LSTM's state size (``TXT_HIDDEN_SIZE``, 512; halved per direction
            when bidirectional).
        lstm_layers: layers of the sentence LSTM (3).
        bidirectional_lstm: read the sentence both ways (released: False).
        proposal: ``pool`` (max-pooled cells, the README's "Pool" rows, which Sscs reports) or ``conv``.
        num_scale_layers: layers per scale of the sparse map (``NUM_SCALE_LAYERS``: ``[16]`` Charades,
            ``[16, 8, 8]`` ActivityNet, ``[16, 8, 8, 8]`` TACoS); together they fix the valid cells.
        map_layers: stacked 2-D convolutions over the map (8 Charades/TACoS, 4 ActivityNet; 0: none).
        map_kernel: their kernel size (5 Charades/TACoS, 9 ActivityNet). The first layer pads
            ``map_layers * (map_kernel - 1) / 2`` cells and the others none, so the output is ``N x N``
            again (the released 16 = 8 * 4 / 2 = 4 * 8 / 2).
        min_iou, max_iou: ``t_min``, ``t_max`` of the rescaled IoU targets (0.5 / 1.0; TACoS 0.3 / 0.7).
        nms_threshold: ranked cells overlapping a better kept one by IoU > this are suppressed at
            prediction (``TEST.NMS_THRESH``: 0.45 Charades Pool, 0.5 ActivityNet, 0.4 TACoS Pool).
        top_k: spans kept per sentence after NMS (``max(RECALL)`` = 5).
        fine_tune_word_vectors: train the word embedding (released: frozen GloVe).
        sscs: the training-only Sscs branch (Ding et al., ICCV 2021; docs/sscs.md): a mapping of
            :class:`~higround.models.sscs.SscsConfig` keys, completed with its defaults (``{}``: the
            paper's V-SS + CA with both objectives), or ``None``: no branch (the plain 2D-TAN). It
            taps the frame pool's clips (``F``, ``N x hidden_dim``) and the LSTM's sentence state
            (``G``); predictions never depend on it.
        loss_weights: weight per loss term (a name of :data:`LOSS_TERMS`; ``sscs_contrast`` and
            ``sscs_caption`` are Sscs's lambda_1 and lambda_2); missing terms weigh 1.
    """

    LABEL: ClassVar[str] = "tan2d config"

    video_dim: int = 4096
    word_dim: int = 300
    num_clips: int = 256
    pool_stride: int = 16
    hidden_dim: int = 512
    text_hidden_dim: int = 512
    lstm_layers: int = 3
    bidirectional_lstm: bool = False
    proposal: str = "pool"
    num_scale_layers: list[int] = field(default_factory=lambda: [16])
    map_layers: int = 8
    map_kernel: int = 5
    min_iou: float = 0.5
    max_iou: float = 1.0
    nms_threshold: float = 0.45
    top_k: int = 5
    fine_tune_word_vectors: bool = False
    sscs: dict[str, Any] | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check ranges; a bad value raises ConfigError naming the field."""
        positive = (
            "video_dim",
            "word_dim",
            "num_clips",
            "pool_stride",
            "hidden_dim",
            "text_hidden_dim",
            "lstm_layers",
            "map_kernel",
            "top_k",
        )
        check_at_least(self, "tan2d config", positive, 1)
        if self.map_layers < 0:
            raise ConfigError(f"tan2d config: map_layers must be >= 0, got {self.map_layers}")
        if self.num_clips % self.pool_stride:
            raise ConfigError(
                f"tan2d config: num_clips {self.num_clips} is not a multiple of pool_stride "
                f"{self.pool_stride}"
            )
        if self.bidirectional_lstm and self.text_hidden_dim % 2:
            raise ConfigError(
                "tan2d config: a bidirectional LSTM needs an even text_hidden_dim, got "
                f"{self.text_hidden_dim}"
            )
        if self.proposal not in PROPOSALS:
            raise ConfigError(
                f"tan2d config: proposal must be one of {list(PROPOSALS)}, got {self.proposal!r}"
            )
        self.num_scale_layers = list(self.num_scale_layers)
        if not self.num_scale_layers or any(n < 1 for n in self.num_scale_layers):
            raise ConfigError(
                f"tan2d config: num_scale_layers must be a non-empty list of counts >= 1, got "
                f"{self.num_scale_layers}"
            )
        sparse_layout(self.map_size, self.num_scale_layers)  # the scales must fit the map
        if (self.map_layers * (self.map_kernel - 1)) % 2:
            raise ConfigError(
                f"tan2d config: map_layers * (map_kernel - 1) = {self.map_layers * (self.map_kernel - 1)} "
                "must be even (the first map convolution pads half of it on each side)"
            )
        if not 0.0 <= self.min_iou < self.max_iou <= 1.0:
            raise ConfigError(
                f"tan2d config: need 0 <= min_iou < max_iou <= 1, got {self.min_iou} and {self.max_iou}"
            )
        if not 0.0 <= self.nms_threshold <= 1.0:
            raise ConfigError(f"tan2d config: nms_threshold must be in [0, 1], got {self.nms_threshold}")
        self.sscs = sscs_section(self.sscs)
        check_loss_weights("tan2d config", self.loss_weights, LOSS_TERMS)

    @property
    def sscs_config(self) -> SscsConfig | None:
        """The Sscs branch's config, or ``None`` when the model has no branch."""
        return None if self.sscs is None else SscsConfig.from_dict(self.sscs)

    @property
    def map_size(self) -> int:
        """``N``: clips along each side of the 2D temporal map."""
        return self.num_clips // self.pool_stride

    @property
    def map_padding(self) -> int:
        """Zero cells the first map convolution pads on each side (the others pad none)."""
        return self.map_layers * (self.map_kernel - 1) // 2
