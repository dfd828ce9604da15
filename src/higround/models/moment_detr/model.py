"""Moment-DETR (Lei, Berg and Bansal, NeurIPS 2021; jayleicn/moment_detr ``moment_detr/model.py``,
``transformer.py``): a transformer encoder over ``[video; text]`` tokens, a decoder of learned moment
queries, class / span / saliency heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.models.detr import (
    DecoderLayer,
    DETRModel,
    DETROutput,
    EncoderLayer,
    clip_positions,
    xavier_init,
)
from higround.models.moment_detr.config import MomentDETRConfig


class MomentDETR(DETRModel):
    """Projections -> encoder over ``[video; text]`` -> decoder of ``Q`` queries -> heads.

    ``model(batch) -> DETROutput`` for a batch of the sentence unit (``N_S == 1``); the losses are
    :class:`higround.losses.detr.DETRLoss`.

    * Encoder (``enc_layers`` post-norm layers): self-attention over the projected clips and query
      tokens, sine positions on the clips (:func:`~higround.models.detr.clip_positions`), none on the
      text (``use_txt_pos`` false); padded clips and tokens are masked keys.
    * Decoder (``dec_layers`` DETR layers): ``Q`` learned query positions (``Embedding(Q, d)``) on
      zero initial states, cross-attending to the whole memory, text included; one shared LayerNorm
      after every layer, whose outputs all feed the heads (aux losses).
    * Heads: class ``Linear(d, 2)``, span ``MLP(d, d, 2, 3 layers)`` then sigmoid to
      ``(center, width)``, saliency ``Linear(d, 1)`` on the clips' memory.
    * Initialisation: Xavier-uniform on the encoder and decoder (DETR's ``_reset_parameters``).
    * With ``config.shine``, training only: every video is also scored with its easy negative and
      its hard negatives, one encoder pass, the same saliency head on the re-encoded clips (SHINE
      spec open point 4; :meth:`~higround.models.detr.DETRModel.negative_passes`), into
      :attr:`DETROutput.negative_saliency` and :attr:`DETROutput.hard_saliency`. Eval mode never
      runs it: predictions do not depend on SHINE.
    """

    config: MomentDETRConfig

    def __init__(self, config: MomentDETRConfig, word_vectors: Tensor) -> None:
        """Build the model of ``config`` on ``(V, E)`` ``word_vectors`` (``<pad>`` id 0)."""
        super().__init__(config, word_vectors)
        dim = config.hidden_dim
        layer = (dim, config.num_heads, config.ffn_dim, config.dropout, config.activation)
        self.encoder = nn.ModuleList(EncoderLayer(*layer) for _ in range(config.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*layer) for _ in range(config.decoder_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        xavier_init(self.encoder)
        xavier_init(self.decoder)
        self.queries = nn.Embedding(config.num_queries, dim)
        self.saliency_head = nn.Linear(dim, 1)

    def encode_pair(
        self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """The encoder on raw inputs: ``(B, N_V, d)`` clip memory, ``(B, N_V)`` saliency logits, and
        the whole ``(B, N_V + L, d)`` memory with its positions and mask (the decoder's input)."""
        clips = self.video_projection(video)
        tokens = self.text_projection(text)
        memory = torch.cat([clips, tokens], dim=1)
        mask = torch.cat([video_mask, text_mask], dim=1)
        pos = torch.cat([clip_positions(video_mask, self.config.hidden_dim), torch.zeros_like(tokens)], dim=1)
        for layer in self.encoder:
            memory = layer(memory, pos, mask)
        video_memory = memory[:, : clips.shape[1]]
        return video_memory, self.saliency_head(video_memory).squeeze(-1), (memory, pos, mask)

    def forward(self, batch: ParagraphBatch) -> DETROutput:
        """Ground the one sentence of every row of ``batch`` (and, training with SHINE, score its
        negatives)."""
        self.check_batch(batch)
        video, video_mask = self.video_inputs(batch)
        text, text_mask = self.text_inputs(batch)
        _, saliency, (memory, pos, mask) = self.encode_pair(video, video_mask, text, text_mask)
        query_pos = self.queries.weight[None].expand(memory.shape[0], -1, -1)
        target = torch.zeros_like(query_pos)
        states = []
        for layer in self.decoder:
            target = layer(target, query_pos, memory, pos, mask)
            states.append(self.decoder_norm(target))
        hidden = torch.stack(states)  # (L, B, Q, d)
        negative = hard = None
        if self.training and self.shine is not None:
            negative, hard = self.negative_passes(batch, video, video_mask, text, text_mask)
        return DETROutput(
            logits=self.class_head(hidden),
            spans=self.span_head(hidden).sigmoid(),
            saliency=saliency,
            video_mask=video_mask,
            negative_saliency=negative,
            hard_saliency=hard,
        )
