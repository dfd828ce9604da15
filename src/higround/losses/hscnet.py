"""HSCNet's training objective (main eq. 9-11; supplement eq. 1-7)."""

from __future__ import annotations

from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.losses.alignment import alignment_loss, clip_positives, paragraph_alignment_loss, word_positives
from higround.losses.span import giou_loss, hull_span, l1_loss
from higround.losses.weak_word import word_subset_loss, word_union_loss
from higround.models.hscnet.config import HSCNetConfig
from higround.models.hscnet.model import HSCNetOutput


def _need(value: Tensor | None, name: str) -> Tensor:
    if value is None:
        raise ConfigError(f"hscnet loss: the model output has no {name}; model and loss configs differ")
    return value


class HSCNetLoss(nn.Module):
    """``L_total = L_enc + L_dec + L_grd`` (eq. 11) with every switch of :class:`HSCNetConfig`.

    * ``L_enc`` (eq. 9): ``align_word`` / ``align_sentence`` / ``align_paragraph`` (supp. eq. 3-5);
    * ``L_dec`` (eq. 10): ``paragraph_l1 + paragraph_giou`` against the sentences' hull
      ``[min start, max end]``, ``sentence_l1 + sentence_giou``, ``word_union + word_subset``;
    * ``L_grd``: ``grounding_l1 + grounding_giou`` on the final spans.

    A term whose level, decoder or alignment switch is off is absent from the result. Span terms
    average over every real sentence of the batch; alignment terms over the paragraphs with a
    positive (see :func:`higround.losses.alignment_loss`).
    """

    def __init__(self, config: HSCNetConfig) -> None:
        """The objective of the model built from ``config`` (weights: ``config.loss_weights``)."""
        super().__init__()
        self.config = config

    def forward(self, output: HSCNetOutput, batch: ParagraphBatch) -> dict[str, Tensor]:
        """Every active term (unweighted) and ``"total"``, their weighted sum."""
        config = self.config
        spans, sentence_mask, video_mask = batch.spans, batch.sentence_mask, batch.video_mask
        terms: dict[str, Tensor] = {}

        positives = clip_positives(spans, sentence_mask, video_mask)
        if config.uses_word_alignment:
            terms["align_word"] = alignment_loss(
                _need(output.word_similarity, "word_similarity"),
                word_positives(positives, batch.word_sentence, batch.word_mask),
                batch.word_mask,
                video_mask,
            )
        if config.align_sentence:
            terms["align_sentence"] = alignment_loss(
                output.sentence_similarity, positives, sentence_mask, video_mask
            )
        if config.uses_paragraph_alignment:
            terms["align_paragraph"] = paragraph_alignment_loss(
                _need(output.paragraph_similarity, "paragraph_similarity"), positives.any(dim=1), video_mask
            )

        if config.uses_paragraph_decoder:
            paragraph = _need(output.paragraph_span, "paragraph_span")
            target = hull_span(spans, sentence_mask)
            every = sentence_mask.any(dim=1)
            terms["paragraph_l1"] = l1_loss(paragraph, target, every)
            terms["paragraph_giou"] = giou_loss(paragraph, target, every)
        terms["sentence_l1"] = l1_loss(output.sentence_spans, spans, sentence_mask)
        terms["sentence_giou"] = giou_loss(output.sentence_spans, spans, sentence_mask)
        if config.uses_word_decoder:
            word_spans = _need(output.word_spans, "word_spans")
            word_mask = _need(output.word_span_mask, "word_span_mask")
            terms["word_union"] = word_union_loss(word_spans, word_mask, spans, sentence_mask)
            terms["word_subset"] = word_subset_loss(word_spans, word_mask, spans, sentence_mask)
        terms["grounding_l1"] = l1_loss(output.spans, spans, sentence_mask)
        terms["grounding_giou"] = giou_loss(output.spans, spans, sentence_mask)

        total = sum((config.weight(name) * value for name, value in terms.items()), spans.new_zeros(()))
        return {**terms, "total": total}
