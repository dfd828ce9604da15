"""Every PRVG hyper-parameter, serialisable for checkpoints (defaults: the official ActivityNet recipe).

Official values are those of ``experiments/activitynet/acnet.yaml`` of MCG-NJU/PRVG at commit
``43afa83`` and of the code that reads it (docs/prvg.md cites every one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from higround.errors import ConfigError
from higround.models.family import FamilyConfigBase, check_at_least, check_loss_weights

# Names of the loss terms of :class:`higround.losses.prvg.PRVGLoss` (besides "total"); the keys
# accepted in :attr:`PRVGConfig.loss_weights`. "iou" is the official term (its code calls it
# "giou"); "giou" is returned instead of it when ``generalized_iou`` is on.
LOSS_TERMS = ("attention", "l1", "iou", "giou")
# The official weights (``final_loss``: 1 for the attention loss, LOSS.PARAMS.LAMBDA = 2 for L1,
# LOSS.PARAMS.BETA = 2 for the IoU loss): what a term weighs unless ``loss_weights`` sets it.
DEFAULT_WEIGHTS = {"attention": 1.0, "l1": 2.0, "iou": 2.0, "giou": 2.0}

_LABEL = "prvg config"


@dataclass
class PRVGConfig(FamilyConfigBase):
    """PRVG hyper-parameters (Shi et al., "End-to-end dense video grounding via parallel
    regression"); official names in brackets.

    Attributes:
        video_dim: clip feature size [PRVG.INPUT_SIZE: 500 C3D ActivityNet, 4096 C3D TACoS].
        word_dim: word-vector size [LSTM.PARAMS.TXT_INPUT_SIZE: 300, GloVe 6B].
        num_clips: clips every video is resampled to [``new_tsn_sample(x, 256)``, 512 on TACoS]; a
            data setting kept so a checkpoint says how its features were sampled. The model takes
            any length (sinusoidal positions, no table).
        hidden_dim: ``d`` of the visual projection, the LSTM, the encoders, the decoder and the
            regression MLP [PARALLEL_REGRESSION_MODULE.PARAMS.HIDDEN_DIM and LSTM TXT_HIDDEN_SIZE:
            512; the code needs the two equal, so there is one field].
        num_heads: attention heads of every attention [NHEADS: 8].
        ffn_dim: hidden units of every feed-forward block [DIM_FEEDFORWAD: 4096].
        dropout: dropout of attention weights, FFNs and residual branches [DROPOUT: 0.1].
        lstm_layers: layers of the unidirectional sentence LSTM [LSTM.PARAMS.NUM_LAYERS: 3].
        encoder_layers: layers of each of the two CRE stacks, clips and sentences [CRE_LAYERS: 1].
        decoder_layers: layers of the LMD [LMD_LAYERS: 1]; the attention loss reads the last one.
        regression_layers: linear layers of the regression MLP [``MLP(d, d, 2, 3)``: 3].
        fine_tune_word_vectors: train the embedding (upstream looks GloVe up in the data loader:
            fixed vectors, so false).
        attention_loss: the attention-guidance term (upstream: always on).
        generalized_iou: use ``1 - GIoU`` (Rezatofighi et al.) on the ordered span instead of the
            official ``1 - IoU`` on the raw pair; the term is then named ``giou``.
        loss_weights: weight per loss term (a name of :data:`LOSS_TERMS`); a missing term weighs its
            official weight (:data:`DEFAULT_WEIGHTS`: attention 1, l1 2, iou/giou 2).
    """

    LABEL: ClassVar[str] = _LABEL

    video_dim: int = 500
    word_dim: int = 300
    num_clips: int = 256
    hidden_dim: int = 512
    num_heads: int = 8
    ffn_dim: int = 4096
    dropout: float = 0.1
    lstm_layers: int = 3
    encoder_layers: int = 1
    decoder_layers: int = 1
    regression_layers: int = 3
    fine_tune_word_vectors: bool = False
    attention_loss: bool = True
    generalized_iou: bool = False
    loss_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check ranges; a bad value raises ConfigError naming the field."""
        positive = (
            "video_dim",
            "word_dim",
            "num_clips",
            "hidden_dim",
            "num_heads",
            "ffn_dim",
            "lstm_layers",
            "decoder_layers",
            "regression_layers",
        )
        check_at_least(self, _LABEL, positive, 1)
        if self.encoder_layers < 0:
            raise ConfigError(f"{_LABEL}: encoder_layers must be >= 0, got {self.encoder_layers}")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"{_LABEL}: hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.hidden_dim % 2:
            raise ConfigError(
                f"{_LABEL}: sinusoidal positions need an even hidden_dim, got {self.hidden_dim}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{_LABEL}: dropout must be in [0, 1), got {self.dropout}")
        check_loss_weights(_LABEL, self.loss_weights, LOSS_TERMS)

    def weight(self, term: str) -> float:
        """The weight of loss ``term``: ``loss_weights[term]``, else its official weight."""
        return float(self.loss_weights.get(term, DEFAULT_WEIGHTS[term]))
