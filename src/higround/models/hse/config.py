"""Every HSE / FSE hyper-parameter, serialisable for checkpoints (defaults: the official recipe).

Official values are those of CMHSE's ``train.py`` defaults and its README's commands (HSE:
``--low_level_loss --reconstruct_loss --lowest_reconstruct_loss --norm``), read at HEAD de2b7eb of
zbwglory/CMHSE; docs/hse.md cites every one. The loss terms, numbered H-1 ... H-7 in
docs/hse.md (the main paper's equation numbers are not in our material), are switched one by one
so that every row of the supplement's Tables 1-3 is a config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from higround.errors import ConfigError
from higround.models.family import FamilyConfigBase, check_at_least, check_loss_weights

# The loss terms of :class:`higround.losses.hse.HSELoss` (besides "total"), H-1 ... H-7 of
# docs/hse.md: the keys of :attr:`HSEConfig.loss_weights` and, but for "match", the switches.
LOSS_TERMS = (
    "match",  # H-1 video <-> paragraph
    "context_match",  # H-2 the low-level encodings of the whole video / paragraph
    "high_cluster",  # H-3 video <-> video, paragraph <-> paragraph
    "low_match",  # H-4 clip <-> sentence over the batch
    "low_cluster",  # H-5 clip <-> clip, sentence <-> sentence
    "reconstruction",  # H-6 clips / sentences decoded from the video / paragraph (weight tau)
    "reconstruction_low",  # H-7 frames / words decoded from the decoded clips / sentences (tau_low)
)
# tau = 5e-4 (``weight_recon``, the supplement's balance term) and tau_low = 1e-4
# (``lowest_weight_recon``, code only); every ranking term weighs 1 (``loss = loss + loss_k``).
DEFAULT_WEIGHTS = {
    **dict.fromkeys(LOSS_TERMS[:5], 1.0),
    "reconstruction": 5e-4,
    "reconstruction_low": 1e-4,
}
# How a hinge sum is divided (CMHSE ``--norm``: by N * N; the supplement: "by its batch size").
NORMS = ("n_squared", "n", "none")
# Where clips come from: the annotated segments of the paragraph (the paper's protocol, at training
# and at test time), or equal parts of the video (no annotation needed).
CLIP_SOURCES = ("spans", "uniform")

_LABEL = "hse config"


@dataclass
class HSEConfig(FamilyConfigBase):
    """HSE (Zhang, Hu, Sha, ECCV 2018) and its flat baseline FSE; CMHSE names in brackets.

    Attributes:
        video_dim: frame feature size [``img_dim``: 500 C3D, 2048 Inception-V3].
        word_dim: word-vector size [``word_dim``: 300, GloVe 840B].
        num_clips: at most this many feature frames per encoded sequence, a clip or the whole
            video, subsampled as CMHSE does [``max_frames = 80.0`` of the data loaders]; the data
            setting of the contract (the family resamples nothing else).
        embed_dim: hidden size of every encoder GRU and of the mid-level decoders, the joint
            embedding size [``embed_size = img_first_size = cap_first_size``: 1024; supp. §1].
        hierarchical: HSE (true) or FSE (false: the video and paragraph embeddings are the
            whole-sequence encodings, no clip or sentence level).
        clips: what a clip is in training: ``spans`` (each sentence's annotated segment, CMHSE) or
            ``uniform`` (``uniform_clips`` equal parts of the video).
        eval_clips: the same for validation, ``evaluate`` and ``retrieve`` (null: ``clips``);
            ``uniform`` retrieves videos without annotations at query time.
        uniform_clips: clips per video in the ``uniform`` mode.
        fine_tune_word_vectors: train the word embedding [CMHSE: the embedding is in the optimiser].
        margin: ``alpha`` of every hinge [``margin``: 0.2; supp. §1 "all margin ... 0.2"].
        norm: ``n_squared`` (divide each hinge sum by ``N * N``: CMHSE ``--norm``), ``n`` (by the
            batch size, the supplement's words) or ``none``; the reconstruction distances are
            averaged unless ``none`` (summed).
        context_match: H-2 on (CMHSE: always; not among the supplement's ablated terms).
        high_cluster: H-3 on (Table 1 "high-cluster").
        low_match: H-4 on (Table 1 "low-match"; CMHSE ``--low_level_loss``).
        low_cluster: H-5 on (Table 1 "low-cluster"; CMHSE ``--low_level_loss``).
        reconstruct: H-6 on, the mid-level decoders built (Table 1 "reconstruction";
            ``--reconstruct_loss``).
        reconstruct_low: H-7 on, the frame / word decoders built (``--lowest_reconstruct_loss``).
        loss_weights: weight per loss term (a name of :data:`LOSS_TERMS`); a missing term weighs
            its official weight (:data:`DEFAULT_WEIGHTS`: tau = ``reconstruction`` 5e-4, tau_low =
            ``reconstruction_low`` 1e-4, the rest 1).
    """

    LABEL: ClassVar[str] = _LABEL

    video_dim: int = 500
    word_dim: int = 300
    num_clips: int = 80
    embed_dim: int = 1024
    hierarchical: bool = True
    clips: str = "spans"
    eval_clips: str | None = None
    uniform_clips: int = 4
    fine_tune_word_vectors: bool = True
    margin: float = 0.2
    norm: str = "n_squared"
    context_match: bool = True
    high_cluster: bool = True
    low_match: bool = True
    low_cluster: bool = True
    reconstruct: bool = True
    reconstruct_low: bool = True
    loss_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check ranges and that the switches fit together; ConfigError names the fields."""
        check_at_least(self, _LABEL, ("video_dim", "word_dim", "num_clips", "embed_dim", "uniform_clips"), 1)
        for name, value in (("clips", self.clips), ("eval_clips", self.eval_clips or self.clips)):
            if value not in CLIP_SOURCES:
                raise ConfigError(f"{_LABEL}: {name} must be one of {list(CLIP_SOURCES)}, got {value!r}")
        if self.norm not in NORMS:
            raise ConfigError(f"{_LABEL}: norm must be one of {list(NORMS)}, got {self.norm!r}")
        if not self.margin >= 0:
            raise ConfigError(f"{_LABEL}: margin must be >= 0, got {self.margin}")
        if not self.hierarchical:
            # FSE has no context besides its embedding and no clip or sentence level.
            on = [
                name
                for name in ("context_match", "low_match", "low_cluster", "reconstruct", "reconstruct_low")
                if getattr(self, name)
            ]
            if on:
                raise ConfigError(
                    f"{_LABEL}: hierarchical=false (FSE) has no clip, sentence or context level, but "
                    f"{', '.join(on)} {'is' if len(on) == 1 else 'are'} on: set them false"
                )
        if self.low_match and self.clips != "spans":
            raise ConfigError(
                f"{_LABEL}: low_match pairs clip k with sentence k, which needs clips=spans "
                f"(got clips={self.clips}); set low_match=false for uniform clips"
            )
        if self.reconstruct_low and not self.reconstruct:
            raise ConfigError(
                f"{_LABEL}: reconstruct_low decodes frames and words from the reconstructed clips and "
                "sentences: it needs reconstruct=true"
            )
        check_loss_weights(_LABEL, self.loss_weights, LOSS_TERMS)

    def clip_source(self, training: bool) -> str | None:
        """What a clip is in training (``training``) or in validation, evaluation and retrieval:
        ``"spans"``, ``"uniform"``, or ``None`` for FSE (no clips)."""
        if not self.hierarchical:
            return None
        return self.clips if training else (self.eval_clips or self.clips)

    def terms(self) -> tuple[str, ...]:
        """The loss terms this config computes, in :data:`LOSS_TERMS` order."""
        on = {
            "match": True,
            "context_match": self.context_match,
            "high_cluster": self.high_cluster,
            "low_match": self.low_match,
            "low_cluster": self.low_cluster,
            "reconstruction": self.reconstruct,
            "reconstruction_low": self.reconstruct_low,
        }
        return tuple(t for t in LOSS_TERMS if on[t])

    def weight(self, term: str) -> float:
        """The weight of loss ``term``: ``loss_weights[term]``, else its official weight."""
        return float(self.loss_weights.get(term, DEFAULT_WEIGHTS[term]))
