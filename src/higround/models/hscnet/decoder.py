"""The hierarchical progressive decoder (Section 3.4, eq. 7-8) and the final grounding prediction."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from higround.models.hscnet.config import HSCNetConfig
from higround.models.layers import MultiHeadAttention, SpanHead, run_lstm


def scatter_words(
    g_word: Tensor, word_mask: Tensor, word_sentence: Tensor, word_position: Tensor, sentence_length: Tensor
) -> tuple[Tensor, Tensor]:
    """Reformat paragraph-ordered word tokens ``(B, N_W, C)`` into ``(B, N_S, M, C)`` per sentence.

    ``M`` is the longest sentence of the batch. Returns the tokens and their ``(B, N_S, M)`` mask.
    """
    batch, num_sentences = sentence_length.shape
    longest = int(sentence_length.max())
    b = torch.arange(batch, device=g_word.device)[:, None].expand_as(word_mask)[word_mask]
    tokens = g_word.new_zeros(batch, num_sentences, longest, g_word.shape[-1])
    tokens = tokens.index_put((b, word_sentence[word_mask], word_position[word_mask]), g_word[word_mask])
    mask = torch.arange(longest, device=g_word.device) < sentence_length[..., None]
    return tokens, mask


def fp32_head(head: nn.Module, x: Tensor) -> Tensor:
    """``head(x)`` in float32 even under autocast (a no-op in float32).

    Spans are fractions of the video: in bfloat16 (8 significant bits) a span end near 1 moves in
    steps of 2^-8, 14 s of a one-hour video. The heads are a few small matrix products per sentence,
    so they cost nothing in float32; the losses then see float32 spans too.
    """
    with torch.autocast(x.device.type, enabled=False):
        return head(x.float())


class DecoderOutput(NamedTuple):
    """Decoder predictions (normalised spans); a level switched off is ``None``."""

    spans: Tensor
    sentence_spans: Tensor
    paragraph_span: Tensor | None
    word_spans: Tensor | None
    word_span_mask: Tensor | None


class HierarchicalDecoder(nn.Module):
    """Paragraph, sentence and word decoders and the final multi-level grounding head.

    * paragraph: ``Linear(2D, D)`` on ``g^P`` + head -> one span;
    * sentence (eq. 7): LSTM over ``[g^S_i; g^P]`` (``g^S_i`` alone without the paragraph level)
      -> ``g^SP`` -> head;
    * word (eq. 8): LSTM over ``[g~^W_ij; g^SP_i]`` within each sentence -> ``g~^WS`` -> head;
    * grounding: ``g^SP_i`` attends over its own sentence's word features (``g~^WS``, or
      ``Linear(2D, D)(g~^W)`` when the word decoder is off) -> ``g^WS``; head on ``[g^WS; g^SP]``.
      Without the word level the head sees ``g^SP`` alone.
    """

    def __init__(self, config: HSCNetConfig) -> None:
        """Build the decoders that ``config`` switches on."""
        super().__init__()
        self.config = config
        dim, drop = config.hidden_dim, config.dropout
        lstm_hidden = dim // 2 if config.bidirectional_lstm else dim
        bidirectional = config.bidirectional_lstm

        self.paragraph_project = nn.Linear(2 * dim, dim) if config.uses_paragraph_decoder else None
        self.paragraph_head = SpanHead(dim, dim, drop) if config.uses_paragraph_decoder else None

        sentence_in = 4 * dim if config.paragraph_level else 2 * dim
        self.sentence_lstm = nn.LSTM(sentence_in, lstm_hidden, batch_first=True, bidirectional=bidirectional)
        self.sentence_head = SpanHead(dim, dim, drop)

        self.word_lstm = (
            nn.LSTM(3 * dim, lstm_hidden, batch_first=True, bidirectional=bidirectional)
            if config.uses_word_decoder
            else None
        )
        self.word_head = SpanHead(dim, dim, drop) if config.uses_word_decoder else None
        self.word_project = nn.Linear(2 * dim, dim) if config.word_level and not config.word_decoder else None
        self.grounding_attention = (
            MultiHeadAttention(dim, config.num_heads, drop) if config.word_level else None
        )
        self.grounding_head = SpanHead(2 * dim if config.word_level else dim, dim, drop)

    def forward(
        self,
        g_word: Tensor | None,
        g_sentence: Tensor,
        g_paragraph: Tensor | None,
        word_mask: Tensor,
        word_sentence: Tensor,
        word_position: Tensor,
        sentence_mask: Tensor,
        sentence_length: Tensor,
    ) -> DecoderOutput:
        """Decode the grounding features of each level.

        Args:
            g_word: ``(B, N_W, 2D)`` ``g^W`` (None without the word level).
            g_sentence: ``(B, N_S, 2D)`` ``g^S``.
            g_paragraph: ``(B, 1, 2D)`` ``g^P`` (None without the paragraph level).
            word_mask, word_sentence, word_position, sentence_mask, sentence_length: as in the batch.
        """
        batch, num_sentences = sentence_mask.shape
        paragraph_span = None
        if g_paragraph is not None and self.paragraph_head is not None and self.paragraph_project is not None:
            paragraph_span = fp32_head(self.paragraph_head, self.paragraph_project(g_paragraph[:, 0]))

        sentence_in = g_sentence
        if g_paragraph is not None:
            sentence_in = torch.cat([g_sentence, g_paragraph.expand(-1, num_sentences, -1)], dim=-1)
        g_sp = run_lstm(self.sentence_lstm, sentence_in, sentence_mask.sum(dim=1))  # eq. 7
        sentence_spans = fp32_head(self.sentence_head, g_sp)

        word_spans = word_span_mask = None
        if g_word is None or self.grounding_attention is None:
            spans = fp32_head(self.grounding_head, g_sp)
            return DecoderOutput(spans, sentence_spans, paragraph_span, None, None)

        tokens, token_mask = scatter_words(g_word, word_mask, word_sentence, word_position, sentence_length)
        longest = tokens.shape[2]
        if self.word_lstm is not None and self.word_head is not None:
            word_in = torch.cat([tokens, g_sp[:, :, None].expand(-1, -1, longest, -1)], dim=-1)
            # eq. 8: every real sentence of the batch is one packed sequence.
            encoded = run_lstm(self.word_lstm, word_in[sentence_mask], sentence_length[sentence_mask])
            # Back into (B, N_S, M, D) by integer rows: autocast rejects index_put with a bool index.
            rows = sentence_mask.flatten().nonzero().squeeze(1)
            word_features = encoded.new_zeros(batch * num_sentences, longest, encoded.shape[-1])
            word_features = word_features.index_copy(0, rows, encoded).view(batch, num_sentences, longest, -1)
            word_spans, word_span_mask = fp32_head(self.word_head, word_features), token_mask
        else:
            assert self.word_project is not None
            word_features = self.word_project(tokens)

        # Each sentence query sees only its own words: flatten sentences into the batch axis.
        dim = g_sp.shape[-1]
        g_ws = self.grounding_attention(
            g_sp.reshape(batch * num_sentences, 1, dim),
            word_features.reshape(batch * num_sentences, longest, -1),
            word_features.reshape(batch * num_sentences, longest, -1),
            key_mask=token_mask.reshape(batch * num_sentences, longest),
        ).view(batch, num_sentences, dim)
        spans = fp32_head(self.grounding_head, torch.cat([g_ws, g_sp], dim=-1))
        return DecoderOutput(spans, sentence_spans, paragraph_span, word_spans, word_span_mask)
