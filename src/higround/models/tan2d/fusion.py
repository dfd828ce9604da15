"""2D-TAN's sentence encoder and its fusion with the map (``BaseFusion``, microsoft/2D-TAN
``lib/models/fusion_modules/base_fusion.py``; Zhang et al., AAAI 2020, Section 3.3).

The sentence is read by an LSTM (released: 3 layers, 512 units, one direction) and represented by
its state after the last real word, projected by ``tex_linear`` to the map's width ``H``. Each cell
feature is projected by a ``1 x 1`` convolution (``vis_conv``), multiplied element-wise by the
sentence vector (Hadamard product) and L2-normalised over its channels; cells off the map stay 0.
The projection and the product touch each valid cell alone, so they run on the ``(B, H, C)`` cells
before the map is laid out, which equals the released dense computation times the map mask.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from higround.models.layers import encode_lstm


class HadamardFusion(nn.Module):
    """``normalize(tex_linear(LSTM(words)) * vis_conv(cell))`` for every valid cell."""

    def __init__(
        self, word_dim: int, hidden_dim: int, text_hidden_dim: int, lstm_layers: int, bidirectional: bool
    ) -> None:
        """An LSTM of ``text_hidden_dim`` units (split over the two directions when ``bidirectional``)."""
        super().__init__()
        units = text_hidden_dim // 2 if bidirectional else text_hidden_dim
        self.lstm = nn.LSTM(
            word_dim, units, num_layers=lstm_layers, bidirectional=bidirectional, batch_first=True
        )
        self.text_proj = nn.Linear(text_hidden_dim, hidden_dim)  # tex_linear
        self.cell_proj = nn.Linear(hidden_dim, hidden_dim)  # vis_conv, a 1x1 Conv2d

    def encode_sentence(self, words: Tensor, lengths: Tensor) -> Tensor:
        """``(B, L, E)`` word vectors of sentences of ``lengths`` ``(B,)`` (>= 1) to ``(B, text_hidden_dim)``.

        The LSTM runs on the packed words, so padding never enters it; one direction gives the state
        after the last real word (the released ``txt_h[i][len - 1]``), two give [forward after the last
        word; backward after the first] (:func:`higround.models.layers.encode_lstm`).
        """
        return encode_lstm(self.lstm, words, lengths)[1]

    def forward(self, cells: Tensor, sentence: Tensor) -> Tensor:
        """``(B, H, C)`` cell features and ``(B, text_hidden_dim)`` sentence vectors
        (:meth:`encode_sentence`) to ``(B, H, C)`` unit-norm fused cells."""
        text = self.text_proj(sentence)  # (B, H)
        projected = self.cell_proj(cells.transpose(1, 2))  # (B, C, H)
        return F.normalize(projected * text[:, None, :], dim=-1).transpose(1, 2)
