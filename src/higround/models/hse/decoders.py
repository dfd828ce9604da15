"""The decoders of HSE's reconstruction losses (H-6, H-7 of docs/hse.md; CMHSE ``decoder/``).

Supplement §1: the GRU of hidden size 1,024 is the "sequence encoder and decoder". CMHSE's
``DecoderSequence`` (``Seq2Seq_Decode``): a one-layer GRU started from zeros, fed its input vector
repeated for as many steps as there are items to reconstruct; its hidden states *are* the
reconstructions (no output layer, so bounded by tanh in (-1, 1), even where the targets are raw
frame features: it is what tau was tuned for, spec §5.9).

* mid level: the (unnormalised) video embedding repeated ``K`` times (``K`` its clips) gives the
  ``K`` clip embeddings, ``GRU(1024 -> 1024)``; the paragraph's gives its sentences'.
* low level: every *reconstructed* clip embedding repeated for its frame count gives the clip's
  frames, ``GRU(1024 -> D_v)``; every reconstructed sentence its word vectors, ``GRU(1024 -> 300)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from higround.models.hse.encoders import init_gru, run_gru, step_mask


class RepeatDecoder(nn.Module):
    """A GRU fed one vector repeated for ``length`` steps; its outputs are the reconstructions."""

    def __init__(self, input_dim: int, output_dim: int) -> None:
        """A one-layer GRU ``input_dim -> output_dim`` (hidden size = output size), CMHSE's init."""
        super().__init__()
        self.gru = nn.GRU(input_dim, output_dim, batch_first=True)
        init_gru(self.gru)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """Decode ``lengths[n]`` steps from ``inputs[n]``.

        Args:
            inputs: ``(N, H)`` one vector per sequence to decode.
            lengths: ``(N,)`` steps to decode per vector, all >= 1.

        Returns:
            ``(sum(lengths), output_dim)``: the decoded steps of every sequence, concatenated in order
            (the order of a row-major walk over the valid steps of ``(N, max(lengths))``).
        """
        width = int(lengths.max())
        repeated = inputs[:, None, :].expand(-1, width, -1)
        outputs = run_gru(self.gru, repeated, lengths)
        return outputs[step_mask(lengths, width)]
