"""Every HSCNet hyper-parameter and ablation switch, serialisable for checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from higround.errors import ConfigError
from higround.models.family import FamilyConfigBase, check_at_least, check_loss_weights

# Names of the loss terms returned by :class:`higround.losses.HSCNetLoss` (besides "total"); the
# keys accepted in :attr:`HSCNetConfig.loss_weights`.
LOSS_TERMS = (
    "align_word",
    "align_sentence",
    "align_paragraph",
    "paragraph_l1",
    "paragraph_giou",
    "sentence_l1",
    "sentence_giou",
    "word_union",
    "word_subset",
    "grounding_l1",
    "grounding_giou",
)


@dataclass
class HSCNetConfig(FamilyConfigBase):
    """HSCNet hyper-parameters (paper defaults: ActivityNet-Captions, D = 256, C = 1, 1, 1).

    Attributes:
        video_dim: ``D_v``, the clip feature size (C3D: 500 on ActivityNet, 4096 on TACoS).
        word_dim: ``E``, the word-vector size (GloVe: 300).
        num_clips: ``N^V`` clips per video (256 ActivityNet, 512 TACoS). A data setting, kept here so
            a checkpoint says how its features were sampled; the model itself accepts any length.
        hidden_dim: ``D``.
        num_heads: attention heads in every attention layer. This, ``ffn_dim`` and ``dropout`` are
            not given by the paper: Transformer values (docs/hscnet.md, "Heads, FFN width and dropout").
        ffn_dim: hidden units of the FFNs / modality MLPs (default ``4 * hidden_dim``).
        feature_layers: self-attention layers of the video and the text encoders (3.2: three).
        word_layers, sentence_layers, paragraph_layers: ``C1``, ``C2``, ``C3`` (Table S1).
        dropout: dropout on every sub-layer's output (before its residual), on the projected
            inputs, in the FFNs and in the predictors; on the attention weights too unless
            ``attention_dropout`` says otherwise.
        attention_dropout: dropout on the attention weights (the softmax of eq. 1 and of every other
            attention layer); ``None``: ``dropout``, as PyTorch's transformer layers apply it (the
            Transformer paper [28] itself drops sub-layer outputs only, i.e. ``0``). On the CPU a
            rate above 0 makes ``scaled_dot_product_attention`` leave its fused (flash) kernel for
            the reference one, which keeps every ``(N^V + N^W)^2`` weight matrix for the backward
            pass: training memory grows with the square of ``N^V`` (docs/benchmarks.md). With ``0``
            the fused kernel runs and memory grows linearly; on a GPU the fused kernels apply
            dropout themselves. Inference is the same either way (no dropout in eval mode).
        temperature: ``tau`` of eq. 5 at every level (Table S3: 0.2).
        sharpness_init: initial sigma of eq. 1 (learned per layer).
        positional_encoding: add sinusoidal positions to clips and words after the input projection.
        fine_tune_word_vectors: train the word embedding (frozen by default: GloVe without fine-tuning).
        sentence_query_own_words: eq. 4 cross-attention restricted to the sentence's own words
            (False: every word of the paragraph, as eq. 4 is written).
        bidirectional_lstm: the decoder LSTMs of eq. 7-8 read both directions.
        word_level, paragraph_level: model these levels in the encoder AND the decoder (Table 2).
        align_word, align_sentence, align_paragraph: encoder alignment losses (Table 3).
        paragraph_decoder, word_decoder: decoder levels (Table 4; the sentence decoder is always on).
        loss_weights: weight per loss term (a name of :data:`LOSS_TERMS`); missing terms weigh 1.
    """

    LABEL: ClassVar[str] = "hscnet config"

    video_dim: int = 500
    word_dim: int = 300
    num_clips: int = 256
    hidden_dim: int = 256
    num_heads: int = 8
    ffn_dim: int | None = None
    feature_layers: int = 3
    word_layers: int = 1
    sentence_layers: int = 1
    paragraph_layers: int = 1
    dropout: float = 0.1
    attention_dropout: float | None = None
    temperature: float = 0.2
    sharpness_init: float = 0.1
    positional_encoding: bool = True
    fine_tune_word_vectors: bool = False
    sentence_query_own_words: bool = False
    bidirectional_lstm: bool = True
    word_level: bool = True
    paragraph_level: bool = True
    align_word: bool = True
    align_sentence: bool = True
    align_paragraph: bool = True
    paragraph_decoder: bool = True
    word_decoder: bool = True
    loss_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check ranges; a bad value raises ConfigError naming the field."""
        positive = ("video_dim", "word_dim", "num_clips", "hidden_dim", "num_heads")
        check_at_least(self, "hscnet config", positive, 1)
        check_at_least(
            self, "hscnet config", ("feature_layers", "word_layers", "sentence_layers", "paragraph_layers"), 0
        )
        if self.ffn_dim is not None and self.ffn_dim < 1:
            raise ConfigError(f"hscnet config: ffn_dim must be >= 1, got {self.ffn_dim}")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"hscnet config: hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.positional_encoding and self.hidden_dim % 2:
            raise ConfigError(
                f"hscnet config: sinusoidal positions need an even hidden_dim, got {self.hidden_dim}"
            )
        if self.bidirectional_lstm and self.hidden_dim % 2:
            raise ConfigError(
                f"hscnet config: a bidirectional LSTM needs an even hidden_dim, got {self.hidden_dim}"
            )
        for name in ("dropout", "attention_dropout"):
            rate = getattr(self, name)
            if rate is not None and not 0.0 <= rate < 1.0:
                raise ConfigError(f"hscnet config: {name} must be in [0, 1), got {rate}")
        if not self.temperature > 0:
            raise ConfigError(f"hscnet config: temperature must be > 0, got {self.temperature}")
        if not self.sharpness_init > 0:
            raise ConfigError(f"hscnet config: sharpness_init must be > 0, got {self.sharpness_init}")
        check_loss_weights("hscnet config", self.loss_weights, LOSS_TERMS)

    @property
    def attention_weight_dropout(self) -> float:
        """The dropout rate on attention weights: ``attention_dropout``, or ``dropout`` when unset."""
        return self.dropout if self.attention_dropout is None else self.attention_dropout

    @property
    def ffn_hidden(self) -> int:
        """FFN width: ``ffn_dim`` or ``4 * hidden_dim``."""
        return self.ffn_dim if self.ffn_dim is not None else 4 * self.hidden_dim

    # A level switched off takes its decoder and its alignment loss with it (Table 2).
    @property
    def uses_paragraph_decoder(self) -> bool:
        """The paragraph span is predicted (paragraph level and decoder on)."""
        return self.paragraph_level and self.paragraph_decoder

    @property
    def uses_word_decoder(self) -> bool:
        """Word spans are predicted (word level and decoder on)."""
        return self.word_level and self.word_decoder

    @property
    def uses_word_alignment(self) -> bool:
        """The video-word alignment loss (supp. eq. 3) is on."""
        return self.word_level and self.align_word

    @property
    def uses_paragraph_alignment(self) -> bool:
        """The video-paragraph alignment loss (supp. eq. 5) is on."""
        return self.paragraph_level and self.align_paragraph
