"""PRVG: end-to-end dense video grounding via parallel regression (Shi, Huang and Wang), as its
official code builds it (MCG-NJU/PRVG ``lib/models/prvg.py`` and
``lib/models/parallel_regression_modules/parallel_regression.py``).

A batch row is a paragraph and every one of its sentences is a decoder query: the whole paragraph is
grounded by one forward pass, each sentence regressing its own span. Upstream runs the videos of a
batch one by one in a Python loop; here the batch is one set of padded tensors and masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.models.layers import MultiHeadAttention
from higround.models.prvg.config import PRVGConfig
from higround.models.prvg.decoder import LanguageModulatedDecoder, WeightedCrossAttention
from higround.models.prvg.encoders import SentenceEncoder, VideoEncoder
from higround.models.prvg.regression import RegressionHead
from higround.models.prvg.relation_encoder import RelationEncoder

# The query/key/value projections of an attention module: upstream holds them as the three row
# blocks of one (3d, d) ``in_proj_weight`` (nn.MultiheadAttention).
_QKV = ("q_proj", "k_proj", "v_proj")


def reset_transformer_parameters(module: nn.Module) -> None:
    """Initialise an encoder/decoder stack as the official ``ParallelRegression._reset_parameters``.

    Every parameter with more than one dimension is ``xavier_uniform_``; an attention module's
    biases are 0 (``nn.MultiheadAttention``'s own initialisation, which that loop leaves alone). The
    query, key and value matrices are drawn as the row blocks of one ``(3d, d)`` matrix would be
    (bound ``sqrt(6 / 4d)``, i.e. gain ``sqrt(1/2)`` on a ``(d, d)`` matrix). FFN biases and LayerNorms
    keep PyTorch's defaults, as upstream.
    """
    for parameter in module.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)
    for attention in module.modules():
        if not isinstance(attention, (MultiHeadAttention, WeightedCrossAttention)):
            continue
        for name, child in attention.named_children():
            if not isinstance(child, nn.Linear):
                continue
            if name in _QKV:
                nn.init.xavier_uniform_(child.weight, gain=math.sqrt(0.5))
            if child.bias is not None:
                nn.init.zeros_(child.bias)


@dataclass
class PRVGOutput:
    """PRVG's output for a paragraph batch.

    Attributes:
        boundaries: ``(B, N_S, 2)`` the regressed normalised ``(s, e)`` as the sigmoid gives them,
            not ordered (the loss reads them so, as upstream's).
        attention: ``(B, N_S, N_V)`` the last decoder layer's cross-attention of each sentence over
            the clips, averaged over heads, before dropout; rows sum to 1 over the real clips and are
            exactly 0 on padded ones (the attention loss's weights).
    """

    boundaries: Tensor
    attention: Tensor


class PRVG(nn.Module):
    """Encoders -> CRE (clips; sentences) -> LMD (sentences query the clips) -> parallel regression.

    ``model(batch) -> PRVGOutput`` for a batch of the paragraph unit; the loss is
    :class:`higround.losses.prvg.PRVGLoss`.
    """

    def __init__(self, config: PRVGConfig, word_vectors: Tensor) -> None:
        """Build the model of ``config`` on ``(V, E)`` ``word_vectors`` (``<pad>`` id 0).

        The embedding is frozen unless ``config.fine_tune_word_vectors`` (upstream feeds fixed GloVe
        vectors from its data loader).
        """
        super().__init__()
        if word_vectors.ndim != 2 or word_vectors.shape[1] != config.word_dim:
            raise ConfigError(
                f"prvg: word vectors of shape {tuple(word_vectors.shape)}, expected (V, {config.word_dim})"
            )
        self.config = config
        d, heads, ffn, dropout = config.hidden_dim, config.num_heads, config.ffn_dim, config.dropout
        self.embedding = nn.Embedding.from_pretrained(
            word_vectors.float(), freeze=not config.fine_tune_word_vectors, padding_idx=0
        )
        self.video_encoder = VideoEncoder(config.video_dim, d)
        self.sentence_encoder = SentenceEncoder(config.word_dim, d, config.lstm_layers)
        self.clip_encoder = RelationEncoder(d, heads, ffn, dropout, config.encoder_layers)
        self.text_encoder = RelationEncoder(d, heads, ffn, dropout, config.encoder_layers)
        self.decoder = LanguageModulatedDecoder(d, heads, ffn, dropout, config.decoder_layers)
        self.regressor = RegressionHead(d, config.regression_layers)
        for stack in (self.clip_encoder, self.text_encoder, self.decoder):
            reset_transformer_parameters(stack)

    def forward(self, batch: ParagraphBatch) -> PRVGOutput:
        """Ground every sentence of every paragraph of ``batch`` at once."""
        if batch.video.shape[-1] != self.config.video_dim:
            raise ConfigError(
                f"prvg: clip features have {batch.video.shape[-1]} channels, the model expects "
                f"video_dim={self.config.video_dim}"
            )
        clips = self.clip_encoder(self.video_encoder(batch.video), batch.video_mask)
        sentences = self.sentence_encoder(
            self.embedding(batch.words),
            batch.word_mask,
            batch.word_sentence,
            batch.word_position,
            batch.sentence_mask,
            batch.sentence_length,
        )
        sentences = self.text_encoder(sentences, batch.sentence_mask)
        decoded, attention = self.decoder(sentences, clips, batch.video_mask)
        return PRVGOutput(boundaries=self.regressor(decoded), attention=attention)
