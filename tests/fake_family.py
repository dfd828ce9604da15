"""A fake model family for tests: a tiny ranked-proposal scorer that goes through the whole engine
(training, checkpoints, prediction, Grounder) only by the family contract, proving that nothing in
the engine is HSCNet's own. Registered by tests with ``monkeypatch.setitem(registry.FAMILIES, ...)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.errors import ConfigError
from higround.losses import l1_loss
from higround.models.family import GroundingPredictions, ModelFamily
from higround.models.layers import group_mean, spans_from_logits


@dataclass
class FakeConfig:
    """A two-proposal scorer: pooled video times pooled sentence words, K ranked spans with scores."""

    video_dim: int = 8
    word_dim: int = 8
    num_clips: int = 16
    hidden_dim: int = 8
    proposals: int = 2
    loss_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.proposals < 1:
            raise ConfigError(f"fake config: proposals must be >= 1, got {self.proposals}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FakeConfig:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"fake config: unknown key(s) {unknown}")
        return cls(**data)


@dataclass
class FakeOutput:
    spans: Tensor  # (B, N_S, K, 2), best first
    scores: Tensor  # (B, N_S, K)


class FakeModel(nn.Module):
    def __init__(self, config: FakeConfig, word_vectors: Tensor) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding.from_pretrained(word_vectors.clone(), freeze=True)
        self.video = nn.Linear(config.video_dim, config.hidden_dim)
        self.text = nn.Linear(config.word_dim, config.hidden_dim)
        self.head = nn.Linear(config.hidden_dim, 3 * config.proposals)

    def forward(self, batch: ParagraphBatch) -> FakeOutput:
        mask = batch.video_mask[..., None].float()
        video = (self.video(batch.video) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        words = self.text(self.embedding(batch.words))
        sentences = group_mean(words, batch.word_sentence, batch.word_mask, batch.sentence_mask.shape[1])
        b, n_s, _ = sentences.shape
        logits = self.head(sentences * video[:, None]).view(b, n_s, self.config.proposals, 3)
        scores, order = logits[..., 2].sort(dim=-1, descending=True)
        spans = spans_from_logits(logits[..., :2]).gather(2, order[..., None].expand(-1, -1, -1, 2))
        return FakeOutput(spans, scores)


class FakeLoss(nn.Module):
    def __init__(self, config: FakeConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, output: FakeOutput, batch: ParagraphBatch) -> dict[str, Tensor]:
        terms = {
            "best_l1": l1_loss(output.spans[:, :, 0], batch.spans, batch.sentence_mask),
            "score_size": output.scores[batch.sentence_mask].pow(2).mean(),
        }
        weight = self.config.loss_weights.get
        return {**terms, "total": sum((weight(k, 1.0) * v for k, v in terms.items()), torch.zeros(()))}


FAKE_FAMILY: ModelFamily[FakeConfig, FakeOutput] = ModelFamily(
    name="fake",
    title="Fake",
    config_class=FakeConfig,
    build_model=FakeModel,
    build_loss=FakeLoss,
    predictions=lambda output, batch: GroundingPredictions(spans=output.spans, scores=output.scores),
)
