"""PRVG's input encoders: the clips' linear projection and the sentences' LSTM, each plus sinusoidal
positions (official ``PRVG.forward`` and ``positional_encoding``, ``lib/models/prvg.py``).

The clips get positions over their index in the video, the sentences over their index in the
paragraph: the sentence vectors are a sequence that the sentence encoder and the decoder read in
order, which is how PRVG tells "the first sentence" from "the third".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from higround.models.layers import encode_lstm, sinusoidal_positions


class VideoEncoder(nn.Module):
    """``v_t = W x_t + b + PE(t)``: ``Linear(D_v, d)`` without activation or dropout (official
    ``visual_linear``), plus the sine/cosine encoding of the clip index ``t``.

    Padded clips hold anything; every later layer masks them as keys.
    """

    def __init__(self, video_dim: int, dim: int) -> None:
        """``video_dim`` input channels to ``dim``."""
        super().__init__()
        self.proj = nn.Linear(video_dim, dim)

    def forward(self, video: Tensor) -> Tensor:
        """``(B, N_V, D_v)`` clips to ``(B, N_V, d)``."""
        x = self.proj(video)
        return x + sinusoidal_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)[None]


def sentence_words(
    embedded: Tensor, word_mask: Tensor, word_sentence: Tensor, word_position: Tensor, sentence_mask: Tensor
) -> Tensor:
    """The paragraph-ordered ``(B, N_W, E)`` word vectors laid out one real sentence per row.

    Args:
        embedded: ``(B, N_W, E)`` word vectors of each paragraph, its sentences concatenated.
        word_mask, word_sentence, word_position: ``(B, N_W)`` as in the batch.
        sentence_mask: ``(B, N_S)`` real sentences.

    Returns:
        ``(R, M, E)``: row ``r`` is the ``r``-th real sentence in ``(paragraph, sentence)`` order,
        ``R = sentence_mask.sum()``, ``M`` the longest sentence; zeros past a sentence's end. One
        ``index_put``: padded sentences get no row, so the LSTM never runs on them.
    """
    batch, num_sentences = sentence_mask.shape
    row_of = sentence_mask.flatten().long().cumsum(0) - 1  # (B * N_S,) row of each real sentence
    paragraph = torch.arange(batch, device=embedded.device)[:, None].expand_as(word_mask)[word_mask]
    rows = row_of[paragraph * num_sentences + word_sentence[word_mask]]
    positions = word_position[word_mask]
    longest = int(positions.max()) + 1 if positions.numel() else 1
    tokens = embedded.new_zeros(int(sentence_mask.sum()), longest, embedded.shape[-1])
    return tokens.index_put((rows, positions), embedded[word_mask])


class SentenceEncoder(nn.Module):
    """``s_i = h_last(LSTM(words of sentence i)) + PE(i)`` for every sentence ``i`` of the paragraph.

    A unidirectional ``lstm_layers``-layer LSTM of width ``d`` (official ``nn.LSTM(300, 512, 3)``,
    no dropout), packed: the sentence vector is the last layer's state after the sentence's last
    real word (the official code gathers the output at ``length - 1``, the same value). All real
    sentences of the batch run as one packed sequence batch.
    """

    def __init__(self, word_dim: int, dim: int, layers: int) -> None:
        """An LSTM from ``word_dim`` word vectors to ``dim`` units, ``layers`` deep."""
        super().__init__()
        self.lstm = nn.LSTM(word_dim, dim, num_layers=layers, batch_first=True)

    def forward(
        self,
        embedded: Tensor,
        word_mask: Tensor,
        word_sentence: Tensor,
        word_position: Tensor,
        sentence_mask: Tensor,
        sentence_length: Tensor,
    ) -> Tensor:
        """``(B, N_W, E)`` embedded paragraph words to ``(B, N_S, d)`` sentence vectors with their
        positions (zeros plus positions on padded sentences, which later layers mask)."""
        tokens = sentence_words(embedded, word_mask, word_sentence, word_position, sentence_mask)
        _, final = encode_lstm(self.lstm, tokens, sentence_length[sentence_mask])
        batch, num_sentences = sentence_mask.shape
        vectors = final.new_zeros(batch, num_sentences, final.shape[-1])
        vectors[sentence_mask] = final
        positions = sinusoidal_positions(num_sentences, final.shape[-1], final.device).to(final.dtype)
        return vectors + positions[None]
