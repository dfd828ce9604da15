"""LGI's query side: the bi-LSTM query encoder (paper 3.1) and the sequential query attention
network, SQAN (paper 3.2; eq. 4-7 as the official ``SequentialQueryAttention`` numbers them)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from higround.models.layers import encode_lstm


def masked_softmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax of ``logits`` over ``dim`` where ``mask`` (True: real); masked entries get exactly 0.

    A line without a real entry (padding only) is spread over every entry instead of giving NaN;
    its value is never used.
    """
    mask = mask | ~mask.any(dim=dim, keepdim=True)
    return logits.masked_fill(~mask, float("-inf")).softmax(dim=dim)


class QueryEncoder(nn.Module):
    """A bidirectional LSTM over the embedded words (``QuerySequenceEncoder``).

    Word features are the concatenated states of both directions; the sentence vector is
    ``[forward state after the last word; backward state after the first word]`` (the official code
    gathers both from the padded outputs, :func:`~higround.models.layers.encode_lstm` reads them
    from the final state).
    """

    def __init__(self, word_dim: int, hidden: int, layers: int, dropout: float) -> None:
        """``layers`` bi-LSTM layers of ``hidden`` units per direction, ``dropout`` between layers."""
        super().__init__()
        self.lstm = nn.LSTM(
            word_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, embedded: Tensor, word_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, L, E)`` word vectors (real words a prefix, ``(B, L)`` mask, at least one per row) to
        ``(B, L, 2H)`` word features (zeros past a query's end) and the ``(B, 2H)`` sentence vector."""
        lengths = word_mask.sum(dim=1).clamp_min(1)
        return encode_lstm(self.lstm, embedded, lengths)


class SequentialQueryAttention(nn.Module):
    """SQAN: ``N`` semantic phrases, each an attention over the words guided by the previous one.

    Step ``n`` (eq. 4-7): ``g_n = ReLU(W_g [W_q^(n) q; e_{n-1}])`` with ``e_0 = 0``, then
    ``a^n = softmax_words(w_a^T tanh(W_k g_n + W_w w_l))`` and ``e_n = sum_l a^n_l w_l``. The ``N``
    maps ``W_q^(n)`` are one linear layer with ``N`` output blocks; the steps are sequential by
    definition (each guide reads the previous phrase), a loop over ``N`` (3 or 5) steps.
    """

    def __init__(self, dim: int, num_phrases: int, attention_dim: int) -> None:
        """``num_phrases`` phrases from ``dim``-wide word and sentence features."""
        super().__init__()
        self.num_phrases = num_phrases
        self.sentence_maps = nn.Linear(dim, num_phrases * dim)  # W_q^(1..N)
        self.guide = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU())  # W_g
        self.guide_key = nn.Linear(dim, attention_dim)
        self.word_key = nn.Linear(dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, sentence: Tensor, words: Tensor, word_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, Q)`` sentence vector and ``(B, L, Q)`` words to ``(B, N, Q)`` phrase features ``e``
        and ``(B, N, L)`` their word attentions ``A`` (rows sum to 1 over the real words)."""
        batch, dim = sentence.shape
        queries = self.sentence_maps(sentence).view(batch, self.num_phrases, dim)
        word_keys = self.word_key(words)  # (B, L, H), shared by every step
        phrase = sentence.new_zeros(batch, dim)
        phrases, attentions = [], []
        for n in range(self.num_phrases):
            guide = self.guide(torch.cat([queries[:, n], phrase], dim=-1))
            logits = self.score(torch.tanh(word_keys + self.guide_key(guide)[:, None])).squeeze(-1)
            attention = masked_softmax(logits, word_mask)
            phrase = torch.einsum("bl,blq->bq", attention, words)
            phrases.append(phrase)
            attentions.append(attention)
        return torch.stack(phrases, dim=1), torch.stack(attentions, dim=1)
