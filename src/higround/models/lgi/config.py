"""Every LGI hyper-parameter, serialisable for checkpoints (defaults: the official Charades-STA recipe).

Official values are those of ``src/experiment/options/{charades,anet}/tgn_lgi/LGI.yml`` of
JonghwanMun/LGI4temporalgrounding (docs/lgi.md cites every one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from higround.errors import ConfigError
from higround.models.family import FamilyConfigBase, check_at_least, check_loss_weights
from higround.models.sscs import LOSS_TERMS as SSCS_TERMS
from higround.models.sscs import SscsConfig, sscs_section

# Names of the loss terms of :class:`higround.losses.lgi.LGILoss` (besides "total"); the keys
# accepted in :attr:`LGIConfig.loss_weights`. The Sscs terms (lambda_1, lambda_2 of Sscs eq. 1) are
# returned in training when the config has an ``sscs`` section (and that term is switched on).
LOSS_TERMS = ("boundary", "tag", "dqa", *SSCS_TERMS)
# The last layer of the boundary regressor: ReLU (official Charades-STA) or Sigmoid (ActivityNet).
ACTIVATIONS = ("relu", "sigmoid")

_LABEL = "lgi config"


@dataclass
class LGIConfig(FamilyConfigBase):
    """LGI hyper-parameters (Mun et al., CVPR 2020); official names in brackets.

    Attributes:
        video_dim: ``D_v`` clip feature size [video_enc_vemb_idim]: I3D 1024 (Charades), C3D 500 (ANet).
        word_dim: word-vector size [query_enc_emb_odim: 300, learned from scratch].
        num_clips: segments per video ``T`` [num_segment: 128]; also the size of the learned position
            table, so a video may have at most this many clips.
        hidden_dim: segment feature width ``D`` [video_enc_vemb_odim: 512]; the width of the fusion,
            the residual block, the non-local blocks and the pooled video vector.
        lstm_hidden: bi-LSTM units per direction [query_enc_rnn_hdim: 256]; word, phrase and sentence
            features have ``2 * lstm_hidden`` channels.
        lstm_layers: bi-LSTM layers [query_enc_rnn_nlayer: 2].
        lstm_dropout: dropout between LSTM layers [query_enc_rnn_dropout: 0.5].
        video_dropout: dropout after the segment and the position embeddings (0.5, fixed in the code).
        max_query_length: words read per query [max_length: 10 Charades, 25 ANet]; words past it are
            masked as padding. Null: every word.
        fine_tune_word_vectors: train the embedding (initialised from the given word vectors; with
            ``text.word_vectors: learned`` this is the official randomly initialised, learned table).
        num_phrases: semantic phrases ``N`` of the sequential query attention [num_semantic_entity:
            3 Charades, 5 ANet]; 1 drops the SQAN and uses the sentence vector (LGI-SQAN.yml).
        attention_dim: hidden units of the three attention MLPs [sqan_att_hdim,
            lgi_global_satt_att_hdim, grounding_att_hdim: 256].
        conv_kernel: temporal kernel of the residual block [lgi_local_res_block_1d_ksize: 15]; odd.
        res_blocks: residual blocks of the local context [lgi_local_num_res_blocks: 1]; 0: none.
        nonlocal_blocks: non-local blocks of the global context [lgi_global_num_nl_block: 2 / 1].
        nonlocal_heads: heads per non-local block [lgi_global_nl_nheads: 4 / 1].
        nonlocal_dropout: dropout in the non-local blocks [lgi_global_nl_drop_prob: 0].
        regression_dim: hidden units of the boundary MLP [grounding_hdim: 512].
        regression_activation: ``relu`` (Charades) or ``sigmoid`` (ANet) after the MLP.
        temporal_attention_guidance: the TAG loss [use_temporal_attention_guidance_loss].
        distinct_query_attention: the DQA loss [use_distinct_query_attention_loss]; needs
            ``num_phrases >= 2``.
        dqa_lambda: ``lambda`` of the DQA loss [dqa_lambda: 0.3 Charades, 0.2 ANet].
        sscs: the training-only Sscs branch (Ding et al., ICCV 2021; docs/sscs.md): a mapping of
            :class:`~higround.models.sscs.SscsConfig` keys, completed with its defaults (``{}``: the
            paper's V-SS + CA with both objectives), or ``None``: no branch (the plain LGI). It taps
            the video encoder's segments with positions (``F``, ``T x hidden_dim``) and the query
            encoder's sentence vector (``G``); predictions never depend on it.
        loss_weights: weight per loss term (a name of :data:`LOSS_TERMS`; ``sscs_contrast`` and
            ``sscs_caption`` are Sscs's lambda_1 and lambda_2); missing terms weigh 1
            [tag_weight, dqa_weight: 1].
    """

    LABEL: ClassVar[str] = _LABEL

    video_dim: int = 1024
    word_dim: int = 300
    num_clips: int = 128
    hidden_dim: int = 512
    lstm_hidden: int = 256
    lstm_layers: int = 2
    lstm_dropout: float = 0.5
    video_dropout: float = 0.5
    max_query_length: int | None = None
    fine_tune_word_vectors: bool = True
    num_phrases: int = 3
    attention_dim: int = 256
    conv_kernel: int = 15
    res_blocks: int = 1
    nonlocal_blocks: int = 2
    nonlocal_heads: int = 4
    nonlocal_dropout: float = 0.0
    regression_dim: int = 512
    regression_activation: str = "relu"
    temporal_attention_guidance: bool = True
    distinct_query_attention: bool = True
    dqa_lambda: float = 0.3
    sscs: dict[str, Any] | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check ranges; a bad value raises ConfigError naming the field."""
        positive = (
            "video_dim",
            "word_dim",
            "num_clips",
            "hidden_dim",
            "lstm_hidden",
            "lstm_layers",
            "num_phrases",
            "attention_dim",
            "conv_kernel",
            "nonlocal_heads",
            "regression_dim",
        )
        check_at_least(self, _LABEL, positive, 1)
        check_at_least(self, _LABEL, ("res_blocks", "nonlocal_blocks"), 0)
        if self.max_query_length is not None and self.max_query_length < 1:
            raise ConfigError(
                f"{_LABEL}: max_query_length must be >= 1 (or null), got {self.max_query_length}"
            )
        if self.conv_kernel % 2 == 0:
            # "same" padding of kernel // 2 keeps the clip count only for an odd kernel.
            raise ConfigError(f"{_LABEL}: conv_kernel must be odd, got {self.conv_kernel}")
        if self.hidden_dim % self.nonlocal_heads:
            raise ConfigError(
                f"{_LABEL}: hidden_dim {self.hidden_dim} is not divisible by nonlocal_heads "
                f"{self.nonlocal_heads}"
            )
        for name in ("lstm_dropout", "video_dropout", "nonlocal_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{_LABEL}: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.regression_activation not in ACTIVATIONS:
            raise ConfigError(
                f"{_LABEL}: regression_activation must be one of {list(ACTIVATIONS)}, "
                f"got {self.regression_activation!r}"
            )
        if self.distinct_query_attention and self.num_phrases < 2:
            raise ConfigError(
                f"{_LABEL}: distinct_query_attention needs num_phrases >= 2 (got {self.num_phrases}); "
                "set distinct_query_attention=false"
            )
        if not self.dqa_lambda >= 0:
            raise ConfigError(f"{_LABEL}: dqa_lambda must be >= 0, got {self.dqa_lambda}")
        self.sscs = sscs_section(self.sscs)
        check_loss_weights(_LABEL, self.loss_weights, LOSS_TERMS)

    @property
    def sscs_config(self) -> SscsConfig | None:
        """The Sscs branch's config, or ``None`` when the model has no branch."""
        return None if self.sscs is None else SscsConfig.from_dict(self.sscs)

    @property
    def query_dim(self) -> int:
        """Width of word, phrase and sentence features: both LSTM directions."""
        return 2 * self.lstm_hidden
