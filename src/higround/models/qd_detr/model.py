"""QD-DETR (Moon et al., CVPR 2023; wjun0830/QD-DETR ``qd_detr/model.py``, ``transformer.py``): query-
dependent video representations by text-to-video cross-attention, a global token that scores the
clips' saliency, an anchor decoder, and a negative pass with the batch's rolled queries."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.models.detr import (
    AttentionBlock,
    DETRModel,
    DETROutput,
    EncoderLayer,
    FeedForwardBlock,
    clip_positions,
    inverse_sigmoid,
    xavier_init,
)
from higround.models.qd_detr.config import QDDETRConfig
from higround.models.qd_detr.decoder import AnchorDecoder


class TextToVideoLayer(nn.Module):
    """QD-DETR's T2V encoder layer (``T2V_TransformerEncoderLayer.forward_post``): the clips (with
    positions) attend over the query tokens; ``x = v + drop(attn)``, then ``norm2(x + drop(FFN(norm1(x))))``
    (the FFN reads the normalised sum, the residual keeps the sum itself)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, activation: str) -> None:
        """A layer of width ``dim``."""
        super().__init__()
        self.cross_attention = AttentionBlock(dim, num_heads, dropout, norm=False)
        self.ffn = FeedForwardBlock(dim, ffn_dim, dropout, activation, input_norm=True)

    def forward(self, clips: Tensor, clip_pos: Tensor, tokens: Tensor, token_mask: Tensor) -> Tensor:
        """Update ``(B, N_V, d)`` clips from ``(B, L, d)`` tokens (``(B, L)`` mask); text has no positions."""
        return self.ffn(self.cross_attention(clips, clips + clip_pos, tokens, tokens, token_mask))


class QDDETR(DETRModel):
    """Projections -> T2V encoder -> self-attention encoder over ``[global; video]`` -> anchor decoder.

    ``model(batch) -> DETROutput`` for a batch of the sentence unit (``N_S == 1``); the losses are
    :class:`higround.losses.detr.QDDETRLoss`.

    * T2V encoder (``enc_layers`` :class:`TextToVideoLayer`): the clips become query-dependent; the
      text and the global token pass unchanged.
    * Encoder (``enc_layers`` post-norm layers) over ``[g; clips]``, ``g`` a learned global token with
      its own learned position (``global_rep_token``, ``global_rep_pos``: ``randn(d)``), sine positions
      on the clips; memory = (global vector ``g'``, clip memory ``m``).
    * Saliency ``s_t = <W_1 m_t, W_2 g'> / sqrt(d)`` (``saliency_proj1/2``).
    * Decoder: :class:`~higround.models.qd_detr.decoder.AnchorDecoder` over the clip memory; the span
      of layer ``l`` is ``sigmoid(MLP(state) + inverse_sigmoid(anchor_l))``.
    * Training only: the negative pass, each video with the query of another row
      (:func:`~higround.losses.shine.easy_negative_index`), encoder only (the release discards its
      decoder output), into :attr:`DETROutput.negative_saliency`. With ``config.shine`` the same
      pass also scores the ``H`` hard negatives (one encoder pass over ``B (1 + H)`` pairs:
      :meth:`~higround.models.detr.DETRModel.negative_passes`) into :attr:`DETROutput.hard_saliency`;
      the rolled query is SHINE's easy negative.
    * Initialisation: Xavier-uniform on both encoders and the decoder (``_reset_parameters``).
    """

    config: QDDETRConfig

    def __init__(self, config: QDDETRConfig, word_vectors: Tensor) -> None:
        """Build the model of ``config`` on ``(V, E)`` ``word_vectors`` (``<pad>`` id 0)."""
        super().__init__(config, word_vectors)
        dim = config.hidden_dim
        layer = (dim, config.num_heads, config.ffn_dim, config.dropout, config.activation)
        self.text_to_video = nn.ModuleList(TextToVideoLayer(*layer) for _ in range(config.encoder_layers))
        self.encoder = nn.ModuleList(EncoderLayer(*layer) for _ in range(config.encoder_layers))
        self.decoder = AnchorDecoder(config)
        for part in (self.text_to_video, self.encoder, self.decoder):
            xavier_init(part)
        self.global_token = nn.Parameter(torch.randn(dim))
        self.global_pos = nn.Parameter(torch.randn(dim))
        self.anchors = nn.Embedding(config.num_queries, 2)
        self.saliency_clip = nn.Linear(dim, dim)
        self.saliency_global = nn.Linear(dim, dim)

    def encode_pair(
        self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Both encoders on raw inputs: ``(B, N_V, d)`` clip memory, ``(B, N_V)`` saliency logits and
        the clips' ``(B, N_V, d)`` positions (the decoder's keys)."""
        dim = self.config.hidden_dim
        clips = self.video_projection(video)
        tokens = self.text_projection(text)
        clip_pos = clip_positions(video_mask, dim)
        for t2v in self.text_to_video:
            clips = t2v(clips, clip_pos, tokens, text_mask)
        batch = clips.shape[0]
        memory = torch.cat([self.global_token.expand(batch, 1, dim), clips], dim=1)
        pos = torch.cat([self.global_pos.expand(batch, 1, dim), clip_pos], dim=1)
        mask = torch.cat([video_mask.new_ones(batch, 1), video_mask], dim=1)
        for layer in self.encoder:
            memory = layer(memory, pos, mask)
        global_memory, clip_memory = memory[:, 0], memory[:, 1:]
        saliency = (self.saliency_clip(clip_memory) * self.saliency_global(global_memory)[:, None]).sum(-1)
        return clip_memory, saliency / math.sqrt(dim), clip_pos

    def forward(self, batch: ParagraphBatch) -> DETROutput:
        """Ground the one sentence of every row of ``batch`` (and, training, score the rolled queries
        and, with SHINE, the hard negatives)."""
        self.check_batch(batch)
        video, video_mask = self.video_inputs(batch)
        text, text_mask = self.text_inputs(batch)
        memory, saliency, clip_pos = self.encode_pair(video, video_mask, text, text_mask)
        hidden, references = self.decoder(self.anchors.weight, memory, clip_pos, video_mask)
        negative = hard = None
        if self.training:
            negative, hard = self.negative_passes(batch, video, video_mask, text, text_mask)
        return DETROutput(
            logits=self.class_head(hidden),
            spans=(self.span_head(hidden) + inverse_sigmoid(references)).sigmoid(),
            saliency=saliency,
            video_mask=video_mask,
            negative_saliency=negative,
            hard_saliency=hard,
        )
