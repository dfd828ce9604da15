"""The hierarchical multi-modal encoder (Section 3.3, eq. 1-4): word, sentence, paragraph levels."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from higround.models.hscnet.config import HSCNetConfig
from higround.models.hscnet.multimodal import MultiModalLayer
from higround.models.layers import AttentionLayer, group_mean


class LevelFeatures(NamedTuple):
    """A level's encoder output ``V^{VL(d)}``, ``Q^{VL(d)}`` and the mask of its text tokens."""

    video: Tensor
    text: Tensor
    text_mask: Tensor


class EncoderOutput(NamedTuple):
    """The three levels' outputs; a level switched off is ``None``."""

    word: LevelFeatures | None
    sentence: LevelFeatures
    paragraph: LevelFeatures | None


class _Level(nn.Module):
    """A level above the words: pool the lower text tokens into queries, cross-attend over them (eq. 4),
    re-encode the lower level's clips with a self-attention layer, then ``num_layers`` multi-modal layers.
    """

    def __init__(self, config: HSCNetConfig, num_layers: int) -> None:
        super().__init__()
        dim, heads, ffn, drop = config.hidden_dim, config.num_heads, config.ffn_hidden, config.dropout
        self.query = AttentionLayer(dim, heads, ffn, drop)
        self.video = AttentionLayer(dim, heads, ffn, drop)
        self.layers = nn.ModuleList(
            MultiModalLayer(dim, heads, ffn, drop, config.sharpness_init) for _ in range(num_layers)
        )

    def forward(
        self,
        video: Tensor,
        video_mask: Tensor,
        lower: Tensor,
        lower_mask: Tensor,
        group: Tensor,
        num_groups: int,
        group_mask: Tensor,
        pair_mask: Tensor | None,
    ) -> LevelFeatures:
        pooled = group_mean(lower, group, lower_mask, num_groups)  # eq. 3
        # eq. 4: the pooled tokens query the lower level's text tokens.
        text = self.query(pooled, group_mask, context=lower, context_mask=lower_mask, pair_mask=pair_mask)
        video = self.video(video, video_mask)
        for layer in self.layers:
            video, text = layer(video, text, video_mask, group_mask)
        return LevelFeatures(video, text, group_mask)


class HierarchicalEncoder(nn.Module):
    """Video-word (``C1`` layers), video-sentence (``C2``) and video-paragraph (``C3``) encoders.

    Without the word level the sentence level pools the text encoder's words ``F^W`` and re-encodes
    the video encoder's clips ``F^V``; without the paragraph level the hierarchy stops at sentences.
    """

    def __init__(self, config: HSCNetConfig) -> None:
        """Build the levels that ``config`` switches on."""
        super().__init__()
        self.config = config
        dim, heads, ffn, drop = config.hidden_dim, config.num_heads, config.ffn_hidden, config.dropout
        self.word_layers = (
            nn.ModuleList(
                MultiModalLayer(dim, heads, ffn, drop, config.sharpness_init)
                for _ in range(config.word_layers)
            )
            if config.word_level
            else None
        )
        self.sentence = _Level(config, config.sentence_layers)
        self.paragraph = _Level(config, config.paragraph_layers) if config.paragraph_level else None

    def forward(
        self,
        video: Tensor,
        words: Tensor,
        video_mask: Tensor,
        word_mask: Tensor,
        word_sentence: Tensor,
        sentence_mask: Tensor,
    ) -> EncoderOutput:
        """Encode ``F^V`` ``(B, N_V, D)`` and ``F^W`` ``(B, N_W, D)`` level by level, bottom up.

        ``word_sentence`` ``(B, N_W)`` gives each word's sentence; ``sentence_mask`` ``(B, N_S)``.
        """
        word = None
        if self.word_layers is not None:
            for layer in self.word_layers:  # eq. 1-2, C1 times
                video, words = layer(video, words, video_mask, word_mask)
            word = LevelFeatures(video, words, word_mask)

        num_sentences = sentence_mask.shape[1]
        pair_mask = None
        if self.config.sentence_query_own_words:
            sentence_ids = torch.arange(num_sentences, device=words.device)
            pair_mask = word_sentence[:, None, :] == sentence_ids[None, :, None]
        sentence = self.sentence(
            video, video_mask, words, word_mask, word_sentence, num_sentences, sentence_mask, pair_mask
        )

        paragraph = None
        if self.paragraph is not None:
            paragraph_mask = sentence_mask.any(dim=1, keepdim=True)
            paragraph = self.paragraph(
                sentence.video,
                video_mask,
                sentence.text,
                sentence_mask,
                torch.zeros_like(sentence_mask, dtype=torch.long),
                1,
                paragraph_mask,
                None,
            )
        return EncoderOutput(word, sentence, paragraph)
