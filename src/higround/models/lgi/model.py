"""LGI: Local-Global video-text Interactions for temporal grounding (Mun, Cho and Han, CVPR 2020), with
the optional training-only Sscs branch (Ding et al., ICCV 2021; docs/sscs.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.models.lgi.config import LGIConfig
from higround.models.lgi.interaction import LocalGlobalInteraction
from higround.models.lgi.query_encoder import QueryEncoder, SequentialQueryAttention
from higround.models.lgi.regression import BoundaryRegressor
from higround.models.lgi.video_encoder import VideoEncoder
from higround.models.sscs import SscsBranch


@dataclass
class LGIOutput:
    """LGI's output for a sentence batch (one query per row).

    Attributes:
        boundaries: ``(B, 2)`` regressed normalised ``(t_s, t_e)`` as the last activation gives them
            (neither clamped nor ordered: the boundary loss reads them so, as the official one).
        temporal_attention: ``(B, T)`` the regression's attention over segments (the TAG loss's
            ``a``; exactly 0 on padded clips).
        phrase_attention: ``(B, N, L)`` the SQAN word attentions ``A`` of the phrases (the DQA
            loss's; 0 on padded words), ``None`` without SQAN (``num_phrases == 1``).
        phrase_weights: ``(B, N)`` how the phrase-specific segment sequences are merged.
        segments: ``(B, T, D)`` the video encoder's segment features (Sscs's ``F``, spec §2.3).
        sentence: ``(B, 2H)`` the query encoder's sentence vector (Sscs's ``G``).
        sscs: the Sscs branch's unweighted terms (``sscs_contrast``, ``sscs_caption``) when the model
            has the branch and is training; empty otherwise (always in eval mode).
    """

    boundaries: Tensor
    temporal_attention: Tensor
    phrase_attention: Tensor | None
    phrase_weights: Tensor
    segments: Tensor
    sentence: Tensor
    sscs: dict[str, Tensor] = field(default_factory=dict)


class LGI(nn.Module):
    """Encoders -> SQAN -> local-global interactions -> temporal attentive regression.

    ``model(batch) -> LGIOutput`` for a batch of the sentence unit (``N_S == 1``); the losses are
    :class:`higround.losses.lgi.LGILoss`.

    With ``config.sscs`` the model also holds :attr:`sscs`, the Sscs branch (built last, so the base
    layers draw the same initial weights as without it), and runs it in training only, on the video
    encoder's segments with positions (``F``, the real clips of ``video_mask``) and the query
    encoder's sentence vector (``G``), captioning the words LGI reads (``max_query_length``); its
    terms go into :attr:`LGIOutput.sscs`. In eval mode the branch never runs, so the spans are those
    of the same base weights without it.
    """

    def __init__(self, config: LGIConfig, word_vectors: Tensor) -> None:
        """Build the model of ``config`` on ``(V, E)`` ``word_vectors`` (``<pad>`` id 0).

        The embedding starts from ``word_vectors`` and is trained unless
        ``config.fine_tune_word_vectors`` is false (docs/lgi.md, "Word embedding").
        """
        super().__init__()
        if word_vectors.ndim != 2 or word_vectors.shape[1] != config.word_dim:
            raise ConfigError(
                f"lgi: word vectors of shape {tuple(word_vectors.shape)}, expected (V, {config.word_dim})"
            )
        self.config = config
        self.embedding = nn.Embedding.from_pretrained(
            word_vectors.float(), freeze=not config.fine_tune_word_vectors, padding_idx=0
        )
        self.video_encoder = VideoEncoder(
            config.video_dim, config.hidden_dim, config.num_clips, config.video_dropout
        )
        self.query_encoder = QueryEncoder(
            config.word_dim, config.lstm_hidden, config.lstm_layers, config.lstm_dropout
        )
        self.sqan = (
            SequentialQueryAttention(config.query_dim, config.num_phrases, config.attention_dim)
            if config.num_phrases > 1
            else None
        )
        self.interaction = LocalGlobalInteraction(config)
        self.regressor = BoundaryRegressor(
            config.hidden_dim, config.attention_dim, config.regression_dim, config.regression_activation
        )
        sscs = config.sscs_config
        self.sscs = (
            SscsBranch(
                sscs,
                video_dim=config.hidden_dim,
                sentence_dim=config.query_dim,
                num_clips=config.num_clips,
                word_vectors=self.embedding.weight,
            )
            if sscs is not None
            else None
        )

    def query_mask(self, batch: ParagraphBatch) -> Tensor:
        """``(B, L)`` the words read: the real ones up to ``max_query_length`` (the official loader
        truncates every query to it)."""
        limit = self.config.max_query_length
        if limit is None:
            return batch.word_mask
        return batch.word_mask & (torch.arange(batch.words.shape[1], device=batch.words.device) < limit)

    def forward(self, batch: ParagraphBatch) -> LGIOutput:
        """Ground the one sentence of every row of ``batch``."""
        if batch.sentence_mask.shape[1] != 1:
            raise ConfigError(
                f"lgi grounds one sentence per row (data.unit=sentence); got {batch.sentence_mask.shape[1]}"
            )
        if batch.video.shape[-1] != self.config.video_dim:
            raise ConfigError(
                f"lgi: clip features have {batch.video.shape[-1]} channels, the model expects "
                f"video_dim={self.config.video_dim}"
            )
        word_mask = self.query_mask(batch)
        words, sentence = self.query_encoder(self.embedding(batch.words), word_mask)
        segments = self.video_encoder(batch.video, batch.video_mask)
        if self.sqan is None:
            phrases, phrase_attention = sentence[:, None], None
        else:
            phrases, phrase_attention = self.sqan(sentence, words, word_mask)
        semantic, phrase_weights = self.interaction(segments, batch.video_mask, phrases)
        boundaries, temporal_attention = self.regressor(semantic, batch.video_mask)
        sscs: dict[str, Tensor] = {}
        if self.sscs is not None and self.training:
            sscs = self.sscs.batch_terms(segments, batch.video_mask, sentence, batch, word_mask)
        return LGIOutput(
            boundaries=boundaries,
            temporal_attention=temporal_attention,
            phrase_attention=phrase_attention,
            phrase_weights=phrase_weights,
            segments=segments,
            sentence=sentence,
            sscs=sscs,
        )
