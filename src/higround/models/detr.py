"""The DETR-style moment retrieval blocks Moment-DETR and QD-DETR share (not a family).

Moment-DETR (Lei et al., NeurIPS 2021) and QD-DETR (Moon et al., CVPR 2023) read the same inputs
and answer alike: clip features with a temporal endpoint feature (TEF) appended, query tokens,
both through two input projections; ``Q`` learned moment queries decoded into ``(center, width)``
spans with a foreground/background class each; a saliency score per clip. They differ in the
encoder and the decoder, which each family builds from the layers here:

* :class:`EncoderLayer` — post-norm self-attention with the positions added to queries and keys
  (Moment-DETR's encoder over ``[video; text]``, QD-DETR's over ``[global; video]``);
* :class:`DecoderLayer` — the DETR decoder layer (Moment-DETR);
* :class:`AttentionBlock` / :class:`FeedForwardBlock` — the two halves every layer is made of
  (QD-DETR's text-to-video layer and its anchor decoder vary them).

:class:`DETRModel` holds what both models share: the word embedding (the offline default: the
project's word vectors, frozen) or pre-extracted token features (``data.text_features``), the TEF,
the projections, the class and span heads, and the one pair-saliency entry point
:meth:`DETRModel.pair_saliency` that runs the encoder for any (video, query) pair — QD-DETR's
negative pass and SHINE's extra queries (docs/detr.md, "Extra queries"). With a ``shine`` section
(SHINE, Cheng, Pu et al., ECCV 2024; docs/shine.md) a training forward also scores every video with
its easy negative and its ``H`` hard negatives in one encoder pass (:meth:`DETRModel.negative_passes`).
:func:`detr_predictions` turns either output into the engine's
:class:`~higround.models.family.GroundingPredictions`.

Official facts cited as ``file:line`` are of jayleicn/moment_detr (b7e553a) and wjun0830/QD-DETR
(56c63b2); docs/detr.md lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.losses.shine import LOSS_TERMS as SHINE_TERMS
from higround.losses.shine import NEGATIVE_TERM, ROLL, ShineConfig, easy_negative_index, shine_section
from higround.models.family import FamilyConfigBase, GroundingPredictions, check_at_least, check_loss_weights
from higround.models.layers import MLP, MultiHeadAttention

# Index of the foreground class in the class head's two logits (``SetCriterion.foreground_label``).
FOREGROUND = 0
ACTIVATIONS = ("relu", "prelu")
# Every DETR loss term (besides "total") and its official weight (moment_detr/config.py:
# span_loss_coef 10, giou_loss_coef 1, label_loss_coef 4, lw_saliency 1): what a term weighs unless
# ``loss_weights`` sets it. "saliency" is the hinge; QD-DETR adds its two saliency terms.
DEFAULT_WEIGHTS: dict[str, float] = {"span_l1": 10.0, "span_giou": 1.0, "class": 4.0, "saliency": 1.0}
# The terms a ``shine`` section adds (weights 1 unless set: lambda_neg, lambda_cr, lambda_fr, released
# lw_saliency = coarse_coef = fine_coef = 1): L_neg (Moment-DETR gains it, S-Eq. 4; QD-DETR has it),
# L_cr and L_fr.
SHINE_LOSS_TERMS = (NEGATIVE_TERM, *SHINE_TERMS)


@dataclass
class DETRConfig(FamilyConfigBase):
    """What Moment-DETR and QD-DETR share; official names in brackets (moment_detr/config.py).

    Attributes:
        video_dim: clip feature size before the TEF [v_feat_dim: SlowFast 2304 + CLIP 512].
        word_dim: word-vector size (the offline text: ``text.word_vectors``).
        num_clips: clips per video: every video is resampled to it, or with ``data.native_clips`` a
            video keeps its own clips up to it [max_v_l: 75 on QVHighlights]. The model takes any length.
        text_dim: size of pre-extracted token features (``data.text_features``; the peers' CLIP
            ``last_hidden_state``: 512) [t_feat_dim]; null: the model reads the words.
        hidden_dim: transformer width ``d`` [hidden_dim: 256].
        num_heads: attention heads [nheads: 8].
        ffn_dim: feed-forward hidden units [dim_feedforward: 1024].
        dropout: dropout of attention weights and residual branches [dropout: 0.1].
        input_dropout: dropout of the input projections [input_dropout: 0.5].
        input_layers: layers of each input projection [n_input_proj: 2].
        encoder_layers: encoder layers [enc_layers: 2] (QD-DETR: of each of its two encoders).
        decoder_layers: decoder layers [dec_layers: 2].
        num_queries: moment queries ``Q``, hence ranked spans per query [num_queries: 10].
        max_query_length: query tokens read, the rest is padding [max_q_l: 32].
        tef: append the TEF ``[t / T, (t + 1) / T]`` to every clip [ctx_mode: video_tef].
        fine_tune_word_vectors: train the word embedding (the peers' text encoder is frozen CLIP).
        activation: of every feed-forward block, ``relu`` (Moment-DETR) or ``prelu`` (QD-DETR).
        aux_loss: the losses on every decoder layer, not only the last [aux_loss: true].
        eos_coef: class weight of the background ("no object") in the cross-entropy [eos_coef: 0.1].
        cost_class, cost_span, cost_giou: the Hungarian matching costs [set_cost_class 4,
            set_cost_span 10, set_cost_giou 1].
        saliency_margin: margin of the saliency hinge [saliency_margin: 0.2].
        max_windows: ground-truth windows per query kept as targets, a random subset when there
            are more [max_windows: 5].
        shine: SHINE's training-only negative ranking (docs/shine.md): a mapping of
            :class:`~higround.losses.shine.ShineConfig` keys completed with its defaults (``{}``: the
            paper's), or ``None``: the plain base model. It needs the training queries' hard
            negatives (``data.negatives``) and reads them as words (``text_dim`` null); predictions
            never depend on it.
        loss_weights: weight per loss term; a missing term weighs its official weight
            (:data:`DEFAULT_WEIGHTS`; 1 for the others).
    """

    LABEL: ClassVar[str] = "detr config"
    # The loss terms this config's loss returns (besides "total"), the keys of ``loss_weights``.
    LOSS_TERMS: ClassVar[tuple[str, ...]] = tuple(DEFAULT_WEIGHTS)

    video_dim: int = 2816
    word_dim: int = 300
    num_clips: int = 75
    text_dim: int | None = None
    hidden_dim: int = 256
    num_heads: int = 8
    ffn_dim: int = 1024
    dropout: float = 0.1
    input_dropout: float = 0.5
    input_layers: int = 2
    encoder_layers: int = 2
    decoder_layers: int = 2
    num_queries: int = 10
    max_query_length: int = 32
    tef: bool = True
    fine_tune_word_vectors: bool = False
    activation: str = "relu"
    aux_loss: bool = True
    eos_coef: float = 0.1
    cost_class: float = 4.0
    cost_span: float = 10.0
    cost_giou: float = 1.0
    saliency_margin: float = 0.2
    max_windows: int = 5
    shine: dict[str, Any] | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check ranges; a bad value raises ConfigError naming the field."""
        label = self.LABEL
        positive = (
            "video_dim",
            "word_dim",
            "num_clips",
            "hidden_dim",
            "num_heads",
            "ffn_dim",
            "input_layers",
            "decoder_layers",
            "num_queries",
            "max_query_length",
            "max_windows",
        )
        check_at_least(self, label, positive, 1)
        if self.encoder_layers < 0:
            raise ConfigError(f"{label}: encoder_layers must be >= 0, got {self.encoder_layers}")
        if self.text_dim is not None and self.text_dim < 1:
            raise ConfigError(f"{label}: text_dim must be >= 1 (or null), got {self.text_dim}")
        if self.hidden_dim % self.num_heads or self.hidden_dim % 2:
            raise ConfigError(
                f"{label}: hidden_dim {self.hidden_dim} must be even and divisible by "
                f"num_heads {self.num_heads}"
            )
        for name in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{label}: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"{label}: activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )
        for name in ("eos_coef", "cost_class", "cost_span", "cost_giou", "saliency_margin"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{label}: {name} must be >= 0, got {getattr(self, name)}")
        self.shine = shine_section(self.shine)
        if self.shine is not None and self.text_dim is not None:
            raise ConfigError(
                f"{label}: model.shine reads the hard negatives as words, but text_dim={self.text_dim} "
                "makes the model read token features (set model.text_dim=null, or model.shine=null)"
            )
        check_loss_weights(label, self.loss_weights, self.LOSS_TERMS)

    @property
    def shine_config(self) -> ShineConfig | None:
        """SHINE's settings, or ``None`` when the model trains without it."""
        return None if self.shine is None else ShineConfig.from_dict(self.shine)

    @property
    def easy_negative(self) -> str:
        """How a row's easy negative is chosen (:func:`~higround.losses.shine.easy_negative_index`):
        SHINE's ``easy_negative``, else the batch roll."""
        shine = self.shine_config
        return ROLL if shine is None else shine.easy_negative

    def weight(self, term: str) -> float:
        """The weight of loss ``term``: ``loss_weights[term]``, else its official weight."""
        return float(self.loss_weights.get(term, DEFAULT_WEIGHTS.get(term, 1.0)))

    @property
    def video_input_dim(self) -> int:
        """Channels of a clip as the video projection reads it: the features and the TEF."""
        return self.video_dim + (2 if self.tef else 0)


# --- spans and positions -----------------------------------------------------------------------------


def span_cxw_to_xx(spans: Tensor) -> Tensor:
    """``(..., 2)`` (center, width) to (start, end) (``span_utils.span_cxw_to_xx``; not clamped)."""
    center, width = spans.unbind(dim=-1)
    return torch.stack([center - 0.5 * width, center + 0.5 * width], dim=-1)


def span_xx_to_cxw(spans: Tensor) -> Tensor:
    """``(..., 2)`` (start, end) to (center, width) (``span_utils.span_xx_to_cxw``)."""
    start, end = spans.unbind(dim=-1)
    return torch.stack([(start + end) * 0.5, end - start], dim=-1)


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """``log(x / (1 - x))`` with both parts clamped at ``eps`` (qd_detr/model.py ``inverse_sigmoid``)."""
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp_min(eps) / (1.0 - x).clamp_min(eps))


def sine_embedding(positions: Tensor, dim: int) -> Tensor:
    """``(...,)`` positions in ``[0, 1]`` to ``(..., dim)`` DETR sine features.

    Channel ``2i`` is ``sin(2 pi p / 10000^(2i / dim))`` and ``2i + 1`` is ``cos`` of the same angle
    (``PositionEmbeddingSine`` with ``normalize=True``, ``gen_sineembed_for_position``).
    """
    index = torch.arange(dim, device=positions.device, dtype=torch.float32)
    frequency = 10000.0 ** (2 * torch.div(index, 2, rounding_mode="floor") / dim)
    angles = positions.float()[..., None] * (2 * math.pi) / frequency
    return torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1).flatten(-2)


def clip_positions(video_mask: Tensor, dim: int) -> Tensor:
    """``(B, N_V, dim)`` sine positions of the clips, clip ``t`` of ``T_b`` real clips at ``(t + 1) / T_b``.

    Moment-DETR's ``PositionEmbeddingSine(normalize=True)``: the cumulative count of real clips over
    the row's total; padding never moves a real clip's position.
    """
    count = video_mask.cumsum(dim=1, dtype=torch.float32)
    return sine_embedding(count / (count[:, -1:] + 1e-6), dim)


def temporal_endpoints(video_mask: Tensor) -> Tensor:
    """``(B, N_V, 2)`` the TEF ``[t / T_b, (t + 1) / T_b]`` of clip ``t`` of ``T_b`` real clips (0 on
    padding; ``start_end_dataset.py`` ``tef_st, tef_ed``)."""
    clips = video_mask.sum(dim=1, keepdim=True).clamp_min(1).float()
    start = torch.arange(video_mask.shape[1], device=video_mask.device, dtype=torch.float32)[None] / clips
    return torch.stack([start, start + 1.0 / clips], dim=-1) * video_mask[..., None]


# --- layers ------------------------------------------------------------------------------------------


def activation_module(name: str) -> nn.Module:
    """``relu`` or ``prelu`` (one learned slope per layer, QD-DETR's ``nn.PReLU()``)."""
    return nn.PReLU() if name == "prelu" else nn.ReLU()


class InputProjection(nn.Module):
    """``layers`` x (LayerNorm -> Dropout -> Linear), ReLU after every one but the last
    (moment_detr/model.py ``LinearLayer`` and ``relu_args``)."""

    def __init__(self, in_dim: int, dim: int, layers: int, dropout: float) -> None:
        """Project ``in_dim`` channels to ``dim``."""
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.LayerNorm(in_dim if i == 0 else dim), nn.Dropout(dropout)]
            blocks.append(nn.Linear(in_dim if i == 0 else dim, dim))
            if i < layers - 1:
                blocks.append(nn.ReLU())
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in_dim)`` to ``(..., dim)``."""
        return self.net(x)


class AttentionBlock(nn.Module):
    """Multi-head attention, dropout, the residual, then LayerNorm (post-norm; ``norm=False``: none).

    The positions are added by the caller to what it passes as queries and keys, never to the
    values (DETR's ``with_pos_embed``).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, norm: bool = True) -> None:
        """An attention of width ``dim``."""
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.norm: nn.Module = nn.LayerNorm(dim) if norm else nn.Identity()

    def forward(
        self, residual: Tensor, query: Tensor, key: Tensor, value: Tensor, key_mask: Tensor | None
    ) -> Tensor:
        """``norm(residual + drop(attention(query, key, value)))``; ``key_mask`` ``(B, L_k)`` real keys."""
        return self.norm(residual + self.drop(self.attention(query, key, value, key_mask)))


class FeedForwardBlock(nn.Module):
    """``norm(x + drop(W_2 drop(act(W_1 n(x)))))`` with ``n`` the identity or (``input_norm``) a
    LayerNorm of its own (QD-DETR's text-to-video layer normalises the FFN's input only)."""

    def __init__(
        self, dim: int, ffn_dim: int, dropout: float, activation: str, input_norm: bool = False
    ) -> None:
        """A feed-forward block of ``ffn_dim`` hidden units."""
        super().__init__()
        self.input_norm: nn.Module = nn.LayerNorm(dim) if input_norm else nn.Identity()
        self.net = nn.Sequential(
            nn.Linear(dim, ffn_dim),
            activation_module(activation),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim),
        )
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """Update ``(..., dim)`` tokens."""
        return self.norm(x + self.drop(self.net(self.input_norm(x))))


class EncoderLayer(nn.Module):
    """A post-norm self-attention encoder layer (``TransformerEncoderLayer.forward_post``)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, activation: str) -> None:
        """A layer of width ``dim``."""
        super().__init__()
        self.self_attention = AttentionBlock(dim, num_heads, dropout)
        self.ffn = FeedForwardBlock(dim, ffn_dim, dropout, activation)

    def forward(self, x: Tensor, pos: Tensor, mask: Tensor) -> Tensor:
        """``(B, L, d)`` tokens with ``(B, L, d)`` positions and ``(B, L)`` mask (True: real)."""
        with_pos = x + pos
        return self.ffn(self.self_attention(x, with_pos, with_pos, x, mask))


class DecoderLayer(nn.Module):
    """The DETR decoder layer (``TransformerDecoderLayer.forward_post``): self-attention of the
    queries, cross-attention to the memory, FFN; query positions on queries and keys of both, memory
    positions on the cross-attention's keys."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, activation: str) -> None:
        """A layer of width ``dim``."""
        super().__init__()
        self.self_attention = AttentionBlock(dim, num_heads, dropout)
        self.cross_attention = AttentionBlock(dim, num_heads, dropout)
        self.ffn = FeedForwardBlock(dim, ffn_dim, dropout, activation)

    def forward(
        self, target: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor, memory_mask: Tensor
    ) -> Tensor:
        """Update ``(B, Q, d)`` query states from the ``(B, L, d)`` memory."""
        with_pos = target + query_pos
        target = self.self_attention(target, with_pos, with_pos, target, None)
        target = self.cross_attention(target, target + query_pos, memory + memory_pos, memory, memory_mask)
        return self.ffn(target)


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform every parameter of more than one dimension (DETR ``Transformer._reset_parameters``)."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


# --- the model -----------------------------------------------------------------------------------------


@dataclass
class DETROutput:
    """A DETR-style model's output for a sentence batch (one query per row).

    Attributes:
        logits: ``(L, B, Q, 2)`` class logits (foreground: index 0) of every decoder layer, last last.
        spans: ``(L, B, Q, 2)`` normalised ``(center, width)`` of every decoder layer.
        saliency: ``(B, N_V)`` a saliency logit per clip (padded clips: anything).
        video_mask: ``(B, N_V)`` the real clips.
        negative_saliency: ``(B, N_V)`` the saliency of each video with its easy negative, another
            row's query (:func:`~higround.losses.shine.easy_negative_index`): QD-DETR's negative
            pass, and SHINE's ``s^n``; training only (QD-DETR always, Moment-DETR with SHINE),
            ``None`` otherwise.
        hard_saliency: ``(B, H, N_V)`` SHINE's ``s^hn``: the saliency of each video with its
            query's ``H`` hard negatives, least edited first (training with SHINE only).
    """

    logits: Tensor
    spans: Tensor
    saliency: Tensor
    video_mask: Tensor
    negative_saliency: Tensor | None = None
    hard_saliency: Tensor | None = None


class DETRModel(nn.Module):
    """What Moment-DETR and QD-DETR share: text and video inputs, projections, class and span heads.

    A family's model implements :meth:`encode_pair` (its encoder, to the video memory and the
    per-clip saliency) and :meth:`forward`. Inputs are *raw*: ``(B, N_V, video_input_dim)`` clips
    with the TEF (:meth:`video_inputs`) and ``(B, L, text_dim or word_dim)`` query tokens
    (:meth:`text_inputs`, or :meth:`embed_words` for other word ids); the projections are applied
    inside, so any (video, query) pair of raw inputs can be scored (:meth:`pair_saliency`).
    """

    def __init__(self, config: DETRConfig, word_vectors: Tensor) -> None:
        """The shared parts of ``config``'s model on ``(V, E)`` ``word_vectors`` (``<pad>`` id 0).

        The embedding is frozen unless ``config.fine_tune_word_vectors`` and the model reads words.
        """
        super().__init__()
        name = config.LABEL.split()[0]
        if word_vectors.ndim != 2 or word_vectors.shape[1] != config.word_dim:
            raise ConfigError(
                f"{name}: word vectors of shape {tuple(word_vectors.shape)}, expected (V, {config.word_dim})"
            )
        self.config = config
        self.name = name
        self.shine = config.shine_config
        self.easy_negative = config.easy_negative
        dim = config.hidden_dim
        trainable = config.fine_tune_word_vectors and config.text_dim is None
        self.embedding = nn.Embedding.from_pretrained(
            word_vectors.float(), freeze=not trainable, padding_idx=0
        )
        text_in = config.text_dim if config.text_dim is not None else config.word_dim
        self.text_projection = InputProjection(text_in, dim, config.input_layers, config.input_dropout)
        self.video_projection = InputProjection(
            config.video_input_dim, dim, config.input_layers, config.input_dropout
        )
        self.class_head = nn.Linear(dim, 2)
        self.span_head = MLP(dim, dim, 2, num_layers=3)

    def check_batch(self, batch: ParagraphBatch) -> None:
        """Refuse a batch the model cannot read, in one line naming what differs.

        Raises:
            ConfigError: not one sentence per row, clips of another size, or token features given
                without ``text_dim`` (or missing with it, or of another size).
        """
        config = self.config
        if batch.sentence_mask.shape[1] != 1:
            raise ConfigError(
                f"{self.name} grounds one sentence per row (data.unit=sentence); "
                f"got {batch.sentence_mask.shape[1]}"
            )
        if batch.video.shape[-1] != config.video_dim:
            raise ConfigError(
                f"{self.name}: clip features have {batch.video.shape[-1]} channels, the model expects "
                f"video_dim={config.video_dim}"
            )
        given = batch.text_features
        if config.text_dim is None and given is not None:
            raise ConfigError(f"{self.name}: the batch carries token features but model.text_dim is null")
        if config.text_dim is not None and (given is None or given.shape[-1] != config.text_dim):
            got = "none" if given is None else f"{given.shape[-1]} channels"
            raise ConfigError(
                f"{self.name}: the model reads token features of text_dim={config.text_dim} "
                f"(data.text_features), the batch has {got}"
            )

    def embed_words(self, words: Tensor, word_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Raw query tokens of ``(B, L)`` word ids: their word vectors and the mask of the words read
        (at most ``max_query_length``; the peers cut every query at ``max_q_l``)."""
        positions = torch.arange(words.shape[1], device=words.device)
        return self.embedding(words), word_mask & (positions < self.config.max_query_length)

    def text_inputs(self, batch: ParagraphBatch) -> tuple[Tensor, Tensor]:
        """``(B, L, D_t)`` raw query tokens of the batch and their ``(B, L)`` mask: the token features
        when the model reads them (``text_dim``), else the word vectors."""
        if self.config.text_dim is None:
            return self.embed_words(batch.words, batch.word_mask)
        assert batch.text_features is not None and batch.text_mask is not None  # check_batch
        positions = torch.arange(batch.text_mask.shape[1], device=batch.text_mask.device)
        return batch.text_features, batch.text_mask & (positions < self.config.max_query_length)

    def video_inputs(self, batch: ParagraphBatch) -> tuple[Tensor, Tensor]:
        """``(B, N_V, video_input_dim)`` raw clips (the TEF appended when ``tef``) and their mask."""
        video = batch.video
        if self.config.tef:
            video = torch.cat([video, temporal_endpoints(batch.video_mask).to(video.dtype)], dim=-1)
        return video, batch.video_mask

    def encode_pair(
        self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor
    ) -> tuple[Tensor, Tensor, Any]:
        """The family's encoder on raw inputs: ``(B, N_V, d)`` video memory, ``(B, N_V)`` saliency
        logits and what its decoder needs besides (family-specific)."""
        raise NotImplementedError

    def pair_saliency(self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        """``(B, N_V)`` the saliency logit of every clip of video ``b`` for query ``b``.

        One encoder pass, no decoder: for scoring other queries on the same videos (QD-DETR's rolled
        negative, SHINE's hard and easy negatives). Inputs are raw, as :meth:`video_inputs` and
        :meth:`text_inputs` (or :meth:`embed_words`) give them.
        """
        return self.encode_pair(video, video_mask, text, text_mask)[1]

    def hard_negative_inputs(self, batch: ParagraphBatch) -> tuple[Tensor, Tensor]:
        """``(B, H, L, word_dim)`` raw tokens of every row's first ``H`` hard negatives (SHINE's
        ``hard_negatives``, least edited first) and their ``(B, H, L)`` mask (:meth:`embed_words`).

        Raises:
            ConfigError: the batch carries no hard negatives (``data.negatives`` unset), or fewer
                than ``H`` per query.
        """
        assert self.shine is not None
        count = self.shine.hard_negatives
        words, mask = batch.negative_words, batch.negative_mask
        if words is None or mask is None:
            raise ConfigError(
                f"{self.name}: model.shine trains on hard negatives, but the batch has none "
                "(set data.negatives=FILE.jsonl: docs/shine.md, 'Training with a base model')"
            )
        if words.shape[2] < count:
            raise ConfigError(
                f"{self.name}: model.shine.hard_negatives={count}, but data.negatives gives "
                f"{words.shape[2]} per query"
            )
        words, mask = words[:, 0, :count], mask[:, 0, :count]
        rows, length = words.shape[0], words.shape[2]
        tokens, read = self.embed_words(
            words.reshape(rows * count, length), mask.reshape(rows * count, length)
        )
        return tokens.view(rows, count, length, -1), read.view(rows, count, length)

    def negative_passes(
        self, batch: ParagraphBatch, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """The saliency of every video with its easy negative and (SHINE) its hard negatives.

        The easy negative of row ``b`` is the query of row :func:`easy_negative_index` ``(b)``
        (:attr:`DETRConfig.easy_negative`). With SHINE the ``1 + H`` negatives of each row are
        scored in ONE encoder pass over ``B (1 + H)`` (video, query) pairs: each video repeated, the
        queries padded to one length (padded tokens are masked keys, so they change nothing).

        Args:
            batch: the batch (its videos' groups; with SHINE its hard negatives).
            video, video_mask: raw ``(B, N_V, ...)`` clips and mask (:meth:`video_inputs`).
            text, text_mask: the rows' own raw query tokens (:meth:`text_inputs`).

        Returns:
            ``(B, N_V)`` easy-negative logits and ``(B, H, N_V)`` hard-negative logits (``None``
            without SHINE).
        """
        other = easy_negative_index(batch.same_video(), self.easy_negative)
        easy, easy_mask = text[other], text_mask[other]
        if self.shine is None:
            return self.pair_saliency(video, video_mask, easy, easy_mask), None
        hard, hard_mask = self.hard_negative_inputs(batch)
        rows, count = hard.shape[:2]
        length = max(easy.shape[1], hard.shape[2])
        texts = torch.cat(
            [
                F.pad(easy, (0, 0, 0, length - easy.shape[1]))[:, None],
                F.pad(hard, (0, 0, 0, length - hard.shape[2])),
            ],
            dim=1,
        )  # (B, 1 + H, L, D)
        masks = torch.cat(
            [
                F.pad(easy_mask, (0, length - easy.shape[1]))[:, None],
                F.pad(hard_mask, (0, length - hard.shape[2])),
            ],
            dim=1,
        )
        pairs = rows * (count + 1)
        saliency = self.pair_saliency(
            video[:, None].expand(-1, count + 1, -1, -1).reshape(pairs, *video.shape[1:]),
            video_mask[:, None].expand(-1, count + 1, -1).reshape(pairs, -1),
            texts.reshape(pairs, length, -1),
            masks.reshape(pairs, length),
        ).view(rows, count + 1, -1)
        return saliency[:, 0], saliency[:, 1:]


def detr_predictions(output: DETROutput, batch: ParagraphBatch) -> GroundingPredictions:
    """The last decoder layer's ``Q`` spans ranked by foreground probability, best first
    (``(B, 1, Q, 2)``, in ``[0, 1]``; moment_detr/inference.py sorts by ``prob[..., 0]`` and keeps every
    query), those probabilities as ``scores`` and the clips' saliency logits (``(B, 1, N_V)``)."""
    del batch
    scores = output.logits[-1].softmax(dim=-1)[..., FOREGROUND]
    order = scores.argsort(dim=-1, descending=True)
    spans = span_cxw_to_xx(output.spans[-1]).clamp(0.0, 1.0)
    ranked = spans.gather(1, order[..., None].expand(-1, -1, 2))
    return GroundingPredictions(
        spans=ranked[:, None],
        scores=scores.gather(1, order)[:, None],
        saliency=output.saliency.masked_fill(~output.video_mask, 0.0)[:, None],
    )
