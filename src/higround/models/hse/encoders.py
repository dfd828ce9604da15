"""HSE's sequence encoder: a GRU whose outputs are max-pooled over time (supplement §1).

Supplement §1, "Training Details": "we use GRU with its hidden dimension to be 1,024 as our sequence
encoder and decoder. To obtain the embedding for a sequence, we take the channel-wise max over all
output vectors of the GRU". CMHSE's ``Maxout`` layer (``layers.py``): one unidirectional layer
(``bidirectional=False`` whatever is asked), Xavier-uniform on each of the three gate blocks of
both weight matrices, zero biases, packed sequences, max over the valid steps.

Every level uses it: the low-level encoders (frames -> clip ``f_c``, words -> sentence ``f_s``),
applied also to the whole video / paragraph to give the contexts; and the high-level ones (clips
-> video ``F_v``, sentences -> paragraph ``F_p``), started from those contexts ("input the
subsequent low-level embedding to the high-level encoder as its initial hidden state").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def init_gru(gru: nn.GRU) -> None:
    """CMHSE's ``_init_rnn``: Xavier-uniform on each gate block (reset, update, new) of
    ``weight_ih_l0`` and ``weight_hh_l0``, zero biases (supp. §1: "Xavier initialization")."""
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0"):
            for block in gru.get_parameter(name).chunk(3, dim=0):
                nn.init.xavier_uniform_(block)
        for name in ("bias_ih_l0", "bias_hh_l0"):
            gru.get_parameter(name).zero_()


def run_gru(gru: nn.GRU, x: Tensor, lengths: Tensor, initial: Tensor | None = None) -> Tensor:
    """The outputs of a batch-first one-layer ``gru`` over packed sequences.

    Args:
        gru: a batch-first, one-layer, unidirectional GRU.
        x: ``(N, L, F)`` padded inputs.
        lengths: ``(N,)`` valid steps per sequence, all >= 1.
        initial: ``(N, H)`` initial hidden states, or None (zeros).

    Returns:
        ``(N, L, H)`` outputs; zeros past each sequence's length (padding never enters the recurrence).
    """
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    # nn.GRU reorders a packed batch's initial state by the pack's sorting itself.
    hidden = None if initial is None else initial[None].contiguous()
    out, _ = gru(packed, hidden)
    padded, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return padded


def step_mask(lengths: Tensor, width: int) -> Tensor:
    """``(N, width)`` bool, True for the first ``lengths[n]`` steps of row ``n``."""
    return torch.arange(width, device=lengths.device) < lengths[:, None]


def max_over_time(outputs: Tensor, lengths: Tensor) -> Tensor:
    """``(N, H)`` the channel-wise max of ``outputs`` ``(N, L, H)`` over each row's first
    ``lengths[n]`` steps (supp. §1; padded steps never count, whatever they hold)."""
    valid = step_mask(lengths, outputs.shape[1])
    return outputs.masked_fill(~valid[..., None], float("-inf")).amax(dim=1)


class GRUMaxEncoder(nn.Module):
    """A GRU whose embedding of a sequence is the channel-wise max of its outputs over the valid
    steps (CMHSE ``EncoderImage`` / ``EncoderText`` / ``EncoderSequence`` with ``rnn_type='maxout'``)."""

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        """A one-layer unidirectional GRU ``input_dim -> hidden_dim``, CMHSE's initialisation."""
        super().__init__()
        self.gru = nn.GRU(input_dim, hidden_dim, batch_first=True)
        init_gru(self.gru)

    def forward(self, x: Tensor, lengths: Tensor, initial: Tensor | None = None) -> Tensor:
        """Embed ``N`` padded sequences.

        Args:
            x: ``(N, L, F)`` inputs, padded past ``lengths``.
            lengths: ``(N,)`` valid steps, all >= 1.
            initial: ``(N, H)`` initial hidden states (the high level's contexts), or None.

        Returns:
            ``(N, H)`` max over each sequence's valid outputs; unnormalised.
        """
        return max_over_time(run_gru(self.gru, x, lengths, initial), lengths)
