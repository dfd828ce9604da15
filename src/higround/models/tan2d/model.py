"""2D-TAN: 2D Temporal Adjacent Networks for moment localisation with natural language (Zhang et
al., AAAI 2020), as the released ``TAN`` module builds it (microsoft/2D-TAN ``lib/models/tan.py``),
with the optional training-only Sscs branch (Ding et al., ICCV 2021; docs/sscs.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.models.sscs import SscsBranch
from higround.models.tan2d.config import Tan2DConfig
from higround.models.tan2d.fusion import HadamardFusion
from higround.models.tan2d.map_conv import MapConv
from higround.models.tan2d.temporal_map import FramePool, SparseTemporalMap


@dataclass
class Tan2DOutput:
    """2D-TAN's score map for a batch of sentences (one sentence per row, ``N_S == 1``).

    Attributes:
        logits: ``(B, N, N)`` the score map before the sigmoid (the released ``prediction``), 0 off
            the valid cells.
        mask: ``(N, N)`` bool, the valid cells (the same for every row).
        cell_logits: ``(B, C)`` the logits of the ``C`` valid cells, row-major ``(s, e)`` order.
        cell_spans: ``(C, 2)`` each valid cell's normalised span ``[s / N, (e + 1) / N]``.
        clips: ``(B, N, H)`` the frame pool's map clips (the video encoding ``F`` a training-only
            branch such as Sscs taps).
        sentence: ``(B, text_hidden_dim)`` the LSTM's sentence vector before ``tex_linear`` (``G``).
        top_k, nms_threshold: how the family ranks the cells (the model's config).
        sscs: the Sscs branch's unweighted terms (``sscs_contrast``, ``sscs_caption``) when the model
            has the branch and is training; empty otherwise (always in eval mode).
    """

    logits: Tensor
    mask: Tensor
    cell_logits: Tensor
    cell_spans: Tensor
    clips: Tensor
    sentence: Tensor
    top_k: int
    nms_threshold: float
    sscs: dict[str, Tensor] = field(default_factory=dict)

    @property
    def scores(self) -> Tensor:
        """``(B, C)`` the cells' probabilities ``sigmoid(logit)`` (the released ``joint_prob``)."""
        return torch.sigmoid(self.cell_logits)


class Tan2D(nn.Module):
    """Frame pool -> sparse 2D map -> Hadamard fusion with the sentence -> masked map convolutions ->
    ``Conv2d(H, 1, 1)`` score per cell.

    ``model(batch) -> Tan2DOutput``; the loss is :class:`higround.losses.tan2d.Tan2DLoss`.

    With ``config.sscs`` the model also holds :attr:`sscs`, the Sscs branch (built last, so the base
    layers draw the same initial weights as without it), and runs it in training only, on the frame
    pool's ``N`` map clips (``F``; every clip is real) and the LSTM's sentence state (``G``); its
    terms go into :attr:`Tan2DOutput.sscs`. In eval mode the branch never runs, so the scores are
    those of the same base weights without it.
    """

    def __init__(self, config: Tan2DConfig, word_vectors: Tensor) -> None:
        """Build the model of ``config`` on ``(V, E)`` ``word_vectors`` (``<pad>`` id 0).

        The embedding is frozen unless ``config.fine_tune_word_vectors`` (2D-TAN reads fixed GloVe
        vectors).
        """
        super().__init__()
        if word_vectors.ndim != 2 or word_vectors.shape[1] != config.word_dim:
            raise ConfigError(
                f"tan2d: word vectors of shape {tuple(word_vectors.shape)}, expected (V, {config.word_dim})"
            )
        self.config = config
        hidden = config.hidden_dim
        self.embedding = nn.Embedding.from_pretrained(
            word_vectors.float(), freeze=not config.fine_tune_word_vectors, padding_idx=0
        )
        self.frame_pool = FramePool(config.video_dim, hidden, config.pool_stride)
        self.temporal_map = SparseTemporalMap(
            config.map_size, config.num_scale_layers, hidden, config.proposal
        )
        self.fusion = HadamardFusion(
            config.word_dim, hidden, config.text_hidden_dim, config.lstm_layers, config.bidirectional_lstm
        )
        self.map_conv = MapConv(
            self.temporal_map.get_buffer("mask"), hidden, config.map_kernel, config.map_layers
        )
        self.predictor = nn.Conv2d(hidden, 1, 1)
        sscs = config.sscs_config
        self.sscs = (
            SscsBranch(
                sscs,
                video_dim=hidden,
                sentence_dim=config.text_hidden_dim,
                num_clips=config.map_size,
                word_vectors=self.embedding.weight,
            )
            if sscs is not None
            else None
        )

    def _check(self, batch: ParagraphBatch) -> None:
        config = self.config
        if batch.sentence_mask.shape[1] != 1:
            raise ConfigError(
                f"tan2d: a batch row must hold one sentence (data.unit=sentence), got "
                f"{batch.sentence_mask.shape[1]}"
            )
        if batch.video.shape[1:] != (config.num_clips, config.video_dim):
            raise ConfigError(
                f"tan2d: clip features of shape {tuple(batch.video.shape[1:])}, the model expects "
                f"(num_clips={config.num_clips}, video_dim={config.video_dim})"
            )
        if not bool(batch.video_mask.all()):
            raise ConfigError(f"tan2d: every video must fill all num_clips={config.num_clips} clips")

    def forward(self, batch: ParagraphBatch) -> Tan2DOutput:
        """Score every valid cell of the map for the sentence of each row of ``batch``."""
        self._check(batch)
        clips = self.frame_pool(batch.video)  # (B, H, N)
        cells = self.temporal_map(clips)  # (B, H, C)
        lengths = batch.word_mask.sum(dim=1).clamp_min(1)  # a padded row (no word) reads its first id
        sentence = self.fusion.encode_sentence(self.embedding(batch.words), lengths)
        fused = self.fusion(cells, sentence)
        mask = self.temporal_map.get_buffer("mask")
        mapped = self.map_conv(self.temporal_map.to_map(fused))
        logits = self.predictor(mapped)[:, 0] * mask
        cell_logits = logits.flatten(1)[:, self.temporal_map.get_buffer("flat_index")]
        spans = self.temporal_map.get_buffer("spans")
        video = clips.transpose(1, 2)  # (B, N, H)
        sscs: dict[str, Tensor] = {}
        if self.sscs is not None and self.training:
            every_clip = torch.ones(video.shape[:2], dtype=torch.bool, device=video.device)
            sscs = self.sscs.batch_terms(video, every_clip, sentence, batch, batch.word_mask)
        return Tan2DOutput(
            logits,
            mask,
            cell_logits,
            spans,
            video,
            sentence,
            self.config.top_k,
            self.config.nms_threshold,
            sscs,
        )
