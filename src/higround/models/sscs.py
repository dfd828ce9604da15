"""Sscs, the training-only support-set cross-supervision branch (Ding et al., ICCV 2021), model-agnostic.

A sentence-grounding family attaches :class:`SscsBranch` to its encoders: it hands over its clip
features ``F`` ``(B, T, D_v)``, its sentence vector ``G`` ``(B, D_l)``, the GT clips, the sentence's
words and the batch's same-video mask, and adds the returned terms to its own loss (eq. 1,
``L = L^vg + lambda_1 L^contrast + lambda_2 L^caption``): ``"sscs_contrast"`` and ``"sscs_caption"``,
weighed by the family's ``loss_weights`` under those names. 2D-TAN and LGI do it this way: their
config's ``sscs`` field is a mapping checked by :func:`sscs_section`, their model builds the branch
when it is given and calls :meth:`SscsBranch.batch_terms` (GT clips, same-video pairs and padded
rows taken from the batch) inside ``forward`` when training, and their loss adds the terms the
output carries.

Training-only contract. The family calls the branch only when it is training (``self.training``)
and never lets its output reach a prediction: inference, evaluation and validation run the base
model alone, so a model's predictions are the same with the branch on or off, and the branch costs
nothing at inference (paper, abstract and 3.2). :meth:`SscsBranch.forward` refuses to run in eval
mode. Its parameters live in the family's state dict (under the family's attribute name) only so
that a resumed run continues them.

docs/sscs.md: the equations, where each is implemented, and every choice the paper leaves open.
"""

from __future__ import annotations

import contextlib
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.losses.span import masked_mean
from higround.losses.sscs import (
    AGGREGATES,
    OBJECTIVES,
    REDUCTIONS,
    SAME_VIDEO_NEGATIVES,
    SUPPORTS,
    caption_nll,
    gt_clip_mask,
    gtc_contrastive,
    ss_contrastive,
    support_mask,
    support_set_pool,
)
from higround.models.family import DictConfig, check_at_least
from higround.models.layers import AttentionLayer

CONTRAST_TERM = "sscs_contrast"
CAPTION_TERM = "sscs_caption"
# The names of the terms the branch returns: the keys of the families' loss_weights for lambda_1, lambda_2.
LOSS_TERMS = (CONTRAST_TERM, CAPTION_TERM)


@dataclass
class SscsConfig(DictConfig):
    """Every Sscs switch (defaults: the paper's proposed V-SS + CA with both objectives, 4.2 values).

    The weights ``lambda_1``, ``lambda_2`` of eq. 1 are not here: they are the family's
    ``loss_weights["sscs_contrast"]`` and ``loss_weights["sscs_caption"]``.

    Attributes:
        contrast: ``"ss"`` (eq. 6), ``"gtc"`` (eq. 2) or ``"none"``.
        caption: ``"ss"`` (eq. 7), ``"gtc"`` (eq. 3) or ``"none"``.
        support: the support set of the SS objectives: ``"video"`` (V-SS), ``"gt"`` (GT-SS),
            ``"non_gt"`` (Non-GT-SS) (Section 3.4, Table 2).
        aggregate: the function from the support set to ``w``: ``"ca"`` (eq. 4-5), ``"sa"``
            (eq. 8), ``"fc"``, ``"conv"``, ``"mp"``, ``"ap"`` (Section 3.4).
        tau: the temperature of eq. 2, 4, 6 and 8 (4.2: 0.1).
        dim: ``D``, the shared space of ``X = Psi(F)`` and ``Y = Phi(G)`` (not given; 512).
        normalize: L2-normalise ``X`` and ``Y`` (then the dot products of eq. 2 and 6 are cosines,
            like eq. 4's).
        contrast_reduction: ``"sum"`` over the batch (eq. 2/6 as written) or ``"mean"``.
        caption_reduction: ``"mean"`` over the batch (eq. 3/7 as written) or ``"sum"``.
        same_video_negatives: ``"keep"`` another sentence of the same video as a negative (eq. 2/6)
            or ``"mask"`` it out.
        decoder_hidden: hidden size of the 1-layer LSTM caption decoder.
        gt_encoder_heads: heads of ``Phi'`` (eq. 3), the self-attention layer over the GT clips.
        gt_encoder_ffn_dim: FFN width of that layer.
        fine_tune_word_vectors: train the caption decoder's word embedding (frozen by default).
    """

    LABEL: ClassVar[str] = "sscs config"

    contrast: str = "ss"
    caption: str = "ss"
    support: str = "video"
    aggregate: str = "ca"
    tau: float = 0.1
    dim: int = 512
    normalize: bool = True
    contrast_reduction: str = "sum"
    caption_reduction: str = "mean"
    same_video_negatives: str = "keep"
    decoder_hidden: int = 512
    gt_encoder_heads: int = 8
    gt_encoder_ffn_dim: int = 2048
    fine_tune_word_vectors: bool = False

    def __post_init__(self) -> None:
        """Check every type, choice and range; a bad value raises ConfigError naming the field.

        A recipe's ``model.sscs`` section reaches this class untyped (the families' configs hold it
        as a mapping), so the types are checked here as the engine checks a recipe's other keys: an
        integer is accepted for a float (``tau: 1``), and so is a float literal in a string (YAML 1.1
        reads ``1e-2`` as one).
        """
        hints = typing.get_type_hints(SscsConfig)
        for item in fields(self):
            setattr(self, item.name, _typed(item.name, getattr(self, item.name), hints[item.name]))
        choices = {
            "contrast": OBJECTIVES,
            "caption": OBJECTIVES,
            "support": SUPPORTS,
            "aggregate": AGGREGATES,
            "contrast_reduction": REDUCTIONS,
            "caption_reduction": REDUCTIONS,
            "same_video_negatives": SAME_VIDEO_NEGATIVES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"sscs config: {name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if not 0 < self.tau < math.inf:
            raise ConfigError(f"sscs config: tau must be a finite number > 0, got {self.tau}")
        check_at_least(
            self, "sscs config", ("dim", "decoder_hidden", "gt_encoder_heads", "gt_encoder_ffn_dim"), 1
        )
        if self.caption == "gtc" and self.dim % self.gt_encoder_heads:
            raise ConfigError(
                f"sscs config: dim {self.dim} is not divisible by gt_encoder_heads {self.gt_encoder_heads}"
            )

    @property
    def terms(self) -> tuple[str, ...]:
        """The names of the terms the branch returns (those of :data:`LOSS_TERMS` switched on)."""
        on = (self.contrast != "none", self.caption != "none")
        return tuple(term for term, used in zip(LOSS_TERMS, on, strict=True) if used)

    @property
    def uses_support(self) -> bool:
        """Some objective pools a support set (eq. 6 or 7)."""
        return "ss" in (self.contrast, self.caption)

    @property
    def uses_text(self) -> bool:
        """``Y = Phi(G)`` enters a term: a contrastive objective, or the cross-attention of eq. 4."""
        return self.contrast != "none" or (self.uses_support and self.aggregate == "ca")


def _typed(name: str, value: Any, kind: Any) -> Any:
    """``value`` of field ``name`` checked against its type ``kind`` (bool, int, float or str)."""
    if (kind is bool and isinstance(value, bool)) or (kind is str and isinstance(value, str)):
        return value
    if kind is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if kind is float:
            return float(value)
        if kind is int and isinstance(value, int):
            return value
    raise ConfigError(f"sscs config: {name} must be {kind.__name__}, got {value!r}")


def sscs_section(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A family config's ``sscs`` field checked and completed: every key of :class:`SscsConfig`
    (its defaults where the recipe is silent), or ``None`` (no branch). ``{}`` is the default branch.

    Raises:
        ConfigError: not a mapping, an unknown key, or a bad value (named).
    """
    return None if value is None else SscsConfig.from_dict(value).to_dict()


class GTClipEncoder(nn.Module):
    """``Phi'`` of eq. 3: ``w_i`` from the GT clips ``X_i^gt``, one self-attention layer + masked mean.

    The paper allows "convolutional layers or self-attention"; self-attention takes any number of
    GT clips, and the key mask keeps the other clips out of it.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int) -> None:
        """A post-norm :class:`~higround.models.layers.AttentionLayer` of width ``dim``, no dropout."""
        super().__init__()
        self.layer = AttentionLayer(dim, num_heads, ffn_dim)

    def forward(self, x: Tensor, gt_mask: Tensor) -> Tensor:
        """``(B, T, D)`` clips and ``(B, T)`` GT clips to ``(B, D)`` (zeros for a row without GT)."""
        encoded = self.layer(x, gt_mask)
        return masked_mean(encoded, gt_mask[..., None].expand_as(encoded), dim=1)


class CaptionDecoder(nn.Module):
    """The caption decoder of eq. 3/7: a 1-layer LSTM generating the sentence from ``w``, teacher-forced.

    ``h_0 = tanh(W w)``, ``c_0 = 0``. Input words are embedded by the model vocabulary's word
    vectors (frozen unless ``fine_tune``). The vocabulary is left as it is (``<pad>`` 0, ``<unk>``
    1, no sentence markers), and the markers live in the decoder:

    * ``<bos>`` is a learned input vector (``bos``, zeros at start), not a word id: step 0 reads it
      and predicts the first word;
    * ``<eos>`` is one extra output class, id ``V`` (:attr:`eos_id`, past the vocabulary): the step
      after the last word predicts it. The outputs are ``V + 1`` classes; ``<pad>`` (0) is never a
      target, ``<unk>`` (1) is one when the sentence has it.

    So a sentence of ``n`` words gives ``n + 1`` steps and targets ``w_1 .. w_n, <eos>``.
    """

    def __init__(self, word_vectors: Tensor, in_dim: int, hidden_dim: int, fine_tune: bool = False) -> None:
        """A decoder over the ``(V, E)`` ``word_vectors`` vocabulary, from ``in_dim`` vectors ``w``."""
        super().__init__()
        if word_vectors.ndim != 2 or word_vectors.shape[0] < 1:
            raise ConfigError(f"sscs: word_vectors must be (V, E), got {tuple(word_vectors.shape)}")
        vocabulary, word_dim = word_vectors.shape
        self.embedding = nn.Embedding.from_pretrained(
            word_vectors.detach().clone().float(), freeze=not fine_tune
        )
        self.bos = nn.Parameter(torch.zeros(word_dim))
        self.init_state = nn.Linear(in_dim, hidden_dim)
        self.lstm = nn.LSTM(word_dim, hidden_dim, batch_first=True)
        self.output = nn.Linear(hidden_dim, vocabulary + 1)
        self.eos_id = vocabulary

    def forward(self, w: Tensor, words: Tensor, word_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Teacher-forced scores of a batch of sentences.

        Args:
            w: ``(B, D)`` the vectors the sentences are generated from.
            words: ``(B, L)`` long vocabulary ids.
            word_mask: ``(B, L)`` real words, a prefix of each row.

        Returns:
            ``logits`` ``(B, L + 1, V + 1)``, ``targets`` ``(B, L + 1)`` (the words, then
            :attr:`eos_id`) and ``token_mask`` ``(B, L + 1)`` (the first ``n + 1`` steps of a
            sentence of ``n`` words), for :func:`higround.losses.sscs.caption_nll`.
        """
        batch, length = words.shape
        words = words.masked_fill(~word_mask, 0)
        lengths = word_mask.sum(dim=1)
        inputs = torch.cat([self.bos.expand(batch, 1, -1), self.embedding(words)], dim=1)
        h0 = torch.tanh(self.init_state(w))[None]  # (1, B, H)
        packed = pack_padded_sequence(inputs, (lengths + 1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed, (h0, torch.zeros_like(h0)))
        steps, _ = pad_packed_sequence(out, batch_first=True, total_length=length + 1)
        targets = torch.cat([words, words.new_zeros(batch, 1)], dim=1).scatter(
            1, lengths[:, None], self.eos_id
        )
        token_mask = torch.arange(length + 1, device=words.device)[None, :] <= lengths[:, None]
        return self.output(steps), targets, token_mask


class SscsBranch(nn.Module):
    """The Sscs branch: projections ``Psi``, ``Phi``, the support set, its pooling, and the objectives.

    Only the parts the config uses are built (``Phi`` when ``Y`` enters a term, FC or Conv for that
    function, ``Phi'`` for the GTC caption, the decoder for a caption objective), so every
    parameter of the branch receives a gradient. Training only: see the module docstring.

    * ``X = Psi(F)``, ``Y = Phi(G)``: one ``Linear`` each to ``D``, L2-normalised when
      ``config.normalize`` (Section 3.3.2).
    * FC: ``Linear(T D -> D)`` on the support set zero-padded to ``T`` clips (clips outside it are
      zeros); Conv: ``Conv1d(D, D, kernel_size=T)`` on the same, one output position. ``T`` is
      ``num_clips``, the family's fixed clip count (2D-TAN: N, LGI: 128); an input may be shorter
      (it is zero-padded) or longer when the extra clips are padding.
    """

    def __init__(
        self,
        config: SscsConfig,
        video_dim: int,
        sentence_dim: int,
        num_clips: int | None = None,
        word_vectors: Tensor | None = None,
    ) -> None:
        """A branch for ``F`` of ``video_dim`` channels and ``G`` of ``sentence_dim``.

        Args:
            config: the switches.
            video_dim: ``D_v``.
            sentence_dim: ``D_l``.
            num_clips: ``T`` for FC and Conv (required by them only).
            word_vectors: ``(V, E)`` the model vocabulary's word vectors (required by a caption
                objective), copied into the decoder's embedding.
        """
        super().__init__()
        self.config = config
        dim = config.dim
        pooled_by = config.aggregate if config.uses_support else None
        if pooled_by in ("fc", "conv") and (num_clips is None or num_clips < 1):
            raise ConfigError(f"sscs: aggregate={pooled_by} needs the fixed clip count num_clips >= 1")
        if config.caption != "none" and word_vectors is None:
            raise ConfigError("sscs: a caption objective needs the model vocabulary's word_vectors")
        self.num_clips = num_clips
        self.video_dim = video_dim
        self.sentence_dim = sentence_dim
        self.psi = nn.Linear(video_dim, dim)
        self.phi = nn.Linear(sentence_dim, dim) if config.uses_text else None
        self.fc = nn.Linear(num_clips * dim, dim) if pooled_by == "fc" and num_clips else None
        self.conv = nn.Conv1d(dim, dim, kernel_size=num_clips) if pooled_by == "conv" and num_clips else None
        self.gt_encoder = (
            GTClipEncoder(dim, config.gt_encoder_heads, config.gt_encoder_ffn_dim)
            if config.caption == "gtc"
            else None
        )
        self.decoder = (
            CaptionDecoder(word_vectors, dim, config.decoder_hidden, config.fine_tune_word_vectors)
            if word_vectors is not None and config.caption != "none"
            else None
        )

    def _check(
        self,
        clips: Tensor,
        clip_mask: Tensor,
        sentence: Tensor,
        gt_mask: Tensor,
        words: Tensor,
        word_mask: Tensor,
    ) -> None:
        if clips.ndim != 3 or clips.shape[-1] != self.video_dim:
            raise ConfigError(f"sscs: clips must be (B, T, {self.video_dim}), got {tuple(clips.shape)}")
        batch, length = clips.shape[:2]
        for name, mask in (("clip_mask", clip_mask), ("gt_mask", gt_mask)):
            if mask.shape != (batch, length):
                raise ConfigError(f"sscs: {name} must be ({batch}, {length}), got {tuple(mask.shape)}")
        if sentence.shape != (batch, self.sentence_dim):
            raise ConfigError(
                f"sscs: sentence must be ({batch}, {self.sentence_dim}), got {tuple(sentence.shape)}"
            )
        if words.ndim != 2 or words.shape[0] != batch or word_mask.shape != words.shape:
            raise ConfigError(
                f"sscs: words and word_mask must both be ({batch}, L), got {tuple(words.shape)} and "
                f"{tuple(word_mask.shape)}"
            )

    def _fixed_length(self, x: Tensor, clip_mask: Tensor, support: Tensor) -> Tensor:
        """``(B, num_clips, D)``: the support set's clips in place, zeros elsewhere (FC and Conv)."""
        assert self.num_clips is not None
        length = x.shape[1]
        if length > self.num_clips:
            if clip_mask[:, self.num_clips :].any():
                raise ConfigError(
                    f"sscs: real clips past the fixed num_clips={self.num_clips} of FC/Conv ({length} given)"
                )
            x, support = x[:, : self.num_clips], support[:, : self.num_clips]
        x = x * support[..., None].to(x.dtype)
        return F.pad(x, (0, 0, 0, self.num_clips - x.shape[1]))

    def pool(self, x: Tensor, y: Tensor | None, clip_mask: Tensor, support: Tensor) -> Tensor:
        """``(B, D)`` ``w``: the support set pooled by ``config.aggregate`` (Section 3.4)."""
        if self.fc is not None:
            return self.fc(self._fixed_length(x, clip_mask, support).flatten(1))
        if self.conv is not None:
            return self.conv(self._fixed_length(x, clip_mask, support).transpose(1, 2)).squeeze(-1)
        return support_set_pool(x, y, support, self.config.aggregate, self.config.tau)

    def forward(
        self,
        clips: Tensor,
        clip_mask: Tensor,
        sentence: Tensor,
        gt_mask: Tensor,
        words: Tensor,
        word_mask: Tensor,
        same_video: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The Sscs terms of a training batch of sentences (one sentence and its video per row).

        Args:
            clips: ``(B, T, D_v)`` the family's clip features ``F``.
            clip_mask: ``(B, T)`` real clips (a prefix of each row).
            sentence: ``(B, D_l)`` the family's sentence vectors ``G``.
            gt_mask: ``(B, T)`` GT clips (:func:`higround.losses.sscs.gt_clip_mask`).
            words: ``(B, L)`` the sentences' vocabulary ids.
            word_mask: ``(B, L)`` real words (a prefix of each row).
            same_video: ``(B, B)`` rows showing the same video (``ParagraphBatch.same_video()``);
                required by ``same_video_negatives="mask"``.

        Returns:
            ``"sscs_contrast"`` and/or ``"sscs_caption"``, the scalar terms switched on. Rows whose
            support set is empty (Non-GT-SS of a span covering the video) contribute no SS term.

        Raises:
            RuntimeError: in eval mode (the branch runs in training only).
            ConfigError: inputs of the wrong shape.
        """
        if not self.training:
            raise RuntimeError("the Sscs branch runs in training only; call it when model.training is True")
        self._check(clips, clip_mask, sentence, gt_mask, words, word_mask)
        config = self.config
        x = self.psi(clips)
        y = self.phi(sentence) if self.phi is not None else None
        if config.normalize:
            x = F.normalize(x, dim=-1)
            y = F.normalize(y, dim=-1) if y is not None else None
        gt_mask = gt_mask & clip_mask
        pooled = pooled_rows = None
        if config.uses_support:
            support = support_mask(clip_mask, gt_mask, config.support)
            pooled, pooled_rows = self.pool(x, y, clip_mask, support), support.any(dim=1)
        terms: dict[str, Tensor] = {}
        if config.contrast != "none":
            assert y is not None
            if config.contrast == "ss":
                assert pooled is not None
                terms[CONTRAST_TERM] = ss_contrastive(
                    pooled,
                    y,
                    config.tau,
                    config.contrast_reduction,
                    same_video,
                    config.same_video_negatives,
                    pooled_rows,
                )
            else:
                terms[CONTRAST_TERM] = gtc_contrastive(
                    x,
                    y,
                    gt_mask,
                    clip_mask,
                    config.tau,
                    config.contrast_reduction,
                    same_video,
                    config.same_video_negatives,
                )
        if self.decoder is not None:
            if self.gt_encoder is not None:
                w, rows = self.gt_encoder(x, gt_mask), gt_mask.any(dim=1)
            else:
                assert pooled is not None and pooled_rows is not None
                w, rows = pooled, pooled_rows
            logits, targets, token_mask = self.decoder(w, words, word_mask)
            terms[CAPTION_TERM] = caption_nll(logits, targets, token_mask, config.caption_reduction, rows)
        return terms

    def batch_terms(
        self, clips: Tensor, clip_mask: Tensor, sentence: Tensor, batch: ParagraphBatch, word_mask: Tensor
    ) -> dict[str, Tensor]:
        """The terms of a sentence-unit ``batch`` from a family's taps ``F`` and ``G`` (how 2D-TAN
        and LGI call the branch, in training only).

        The GT clips are those of ``batch.spans[:, 0]`` on the clips ``F`` holds
        (:func:`~higround.losses.sscs.gt_clip_mask`), the same-video pairs ``batch.same_video()``,
        the caption's sentence ``batch.words`` under ``word_mask`` (the words the family reads). A
        row whose sentence is padding (``batch.sentence_mask`` False) is taken out of the batch
        before the branch runs: it adds no term and is no negative of the others, as if absent.

        Args:
            clips: ``(B, T, D_v)`` the family's clip features ``F``.
            clip_mask: ``(B, T)`` their real clips (a prefix tiling the whole video).
            sentence: ``(B, D_l)`` the family's sentence vectors ``G``.
            batch: the batch of one sentence per row (``N_S == 1``).
            word_mask: ``(B, L)`` the words of ``batch.words`` the family reads (a prefix of each row).

        Raises:
            ConfigError: a batch row holds more than one sentence.
        """
        if batch.spans.shape[1] != 1:
            raise ConfigError(
                f"sscs: a batch row must hold one sentence (data.unit=sentence), got {batch.spans.shape[1]}"
            )
        rows = batch.sentence_mask[:, 0]
        gt_mask = gt_clip_mask(batch.spans[:, 0], clip_mask)
        same_video = batch.same_video()[rows][:, rows]
        return self(
            clips[rows],
            clip_mask[rows],
            sentence[rows],
            gt_mask[rows],
            batch.words[rows],
            word_mask[rows],
            same_video,
        )
