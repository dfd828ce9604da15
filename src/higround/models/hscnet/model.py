"""HSCNet: Hierarchical Semantic Correspondence Network for video paragraph grounding (CVPR 2023)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.models.hscnet.aggregation import aggregate
from higround.models.hscnet.config import HSCNetConfig
from higround.models.hscnet.decoder import HierarchicalDecoder
from higround.models.hscnet.feature_encoder import FeatureEncoder
from higround.models.hscnet.hierarchical_encoder import HierarchicalEncoder
from higround.models.layers import MultiHeadAttention


@dataclass
class HSCNetOutput:
    """HSCNet predictions; spans are ``(start, end)`` normalised to ``[0, 1]``; absent levels are ``None``.

    Attributes:
        spans: ``(B, N_S, 2)`` final grounding ``T^`` (the model's answer).
        sentence_spans: ``(B, N_S, 2)`` sentence decoder ``T~^S``.
        paragraph_span: ``(B, 2)`` paragraph decoder ``T~^P``.
        word_spans: ``(B, N_S, M, 2)`` word decoder ``T~^W`` (``M``: longest sentence of the batch).
        word_span_mask: ``(B, N_S, M)`` real words of ``word_spans``.
        word_similarity: ``(B, N_W, N_V)`` ``A^VW`` (eq. 5).
        sentence_similarity: ``(B, N_S, N_V)`` ``A^VS``.
        paragraph_similarity: ``(B, 1, N_V)`` ``A^VP``.
    """

    spans: Tensor
    sentence_spans: Tensor
    paragraph_span: Tensor | None
    word_spans: Tensor | None
    word_span_mask: Tensor | None
    word_similarity: Tensor | None
    sentence_similarity: Tensor
    paragraph_similarity: Tensor | None


class HSCNet(nn.Module):
    """Feature encoders (3.2) -> hierarchical encoder (3.3) -> aggregation (eq. 5-6) -> decoder (3.4).

    ``model(batch) -> HSCNetOutput``; the losses are :class:`higround.losses.HSCNetLoss`.
    """

    def __init__(self, config: HSCNetConfig, word_vectors: Tensor) -> None:
        """Build the model of ``config`` on ``(V, E)`` ``word_vectors`` (``<pad>`` id 0, ``<unk>`` id 1).

        The embedding is frozen unless ``config.fine_tune_word_vectors``.
        """
        super().__init__()
        if word_vectors.ndim != 2 or word_vectors.shape[1] != config.word_dim:
            raise ConfigError(
                f"hscnet: word vectors of shape {tuple(word_vectors.shape)}, expected (V, {config.word_dim})"
            )
        self.config = config
        dim, heads, ffn, drop = config.hidden_dim, config.num_heads, config.ffn_hidden, config.dropout
        self.embedding = nn.Embedding.from_pretrained(
            word_vectors.float(), freeze=not config.fine_tune_word_vectors, padding_idx=0
        )
        layers, positions = config.feature_layers, config.positional_encoding
        self.video_encoder = FeatureEncoder(config.video_dim, dim, layers, heads, ffn, drop, positions)
        self.text_encoder = FeatureEncoder(config.word_dim, dim, layers, heads, ffn, drop, positions)
        self.encoder = HierarchicalEncoder(config)
        self.decoder = HierarchicalDecoder(config)
        # The blocks take one dropout rate; the attention weights' own rate is set here, once.
        for module in self.modules():
            if isinstance(module, MultiHeadAttention):
                module.dropout = config.attention_weight_dropout

    def forward(self, batch: ParagraphBatch) -> HSCNetOutput:
        """Ground every sentence (and the paragraph and words) of ``batch``."""
        if batch.video.shape[-1] != self.config.video_dim:
            raise ConfigError(
                f"hscnet: clip features have {batch.video.shape[-1]} channels, the model expects "
                f"video_dim={self.config.video_dim}"
            )
        tau = self.config.temperature
        video = self.video_encoder(batch.video, batch.video_mask)
        words = self.text_encoder(self.embedding(batch.words), batch.word_mask)
        levels = self.encoder(
            video, words, batch.video_mask, batch.word_mask, batch.word_sentence, batch.sentence_mask
        )

        g_word = word_similarity = g_paragraph = paragraph_similarity = None
        if levels.word is not None:
            g_word, word_similarity = aggregate(levels.word.text, levels.word.video, batch.video_mask, tau)
        g_sentence, sentence_similarity = aggregate(
            levels.sentence.text, levels.sentence.video, batch.video_mask, tau
        )
        if levels.paragraph is not None:
            g_paragraph, paragraph_similarity = aggregate(
                levels.paragraph.text, levels.paragraph.video, batch.video_mask, tau
            )

        decoded = self.decoder(
            g_word,
            g_sentence,
            g_paragraph,
            batch.word_mask,
            batch.word_sentence,
            batch.word_position,
            batch.sentence_mask,
            batch.sentence_length,
        )
        return HSCNetOutput(
            spans=decoded.spans,
            sentence_spans=decoded.sentence_spans,
            paragraph_span=decoded.paragraph_span,
            word_spans=decoded.word_spans,
            word_span_mask=decoded.word_span_mask,
            word_similarity=word_similarity,
            sentence_similarity=sentence_similarity,
            paragraph_similarity=paragraph_similarity,
        )
