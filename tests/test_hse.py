"""HSE / FSE (docs/hse.md): the losses on the spec's hand-computed cases, the encoders' pooling and
packing, the hierarchy's wiring, the decoders, CMHSE's clip protocol, the configs of the
supplement's tables, and an overfit to R@1 = 100."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from higround.data.dataset import encode_paragraph
from higround.data.retrieval import (
    RetrievalBatch,
    clip_bounds,
    collate_retrieval,
    indexed_frames,
    span_frames,
    subsample,
    uniform_frames,
    video_item,
)
from higround.data.schema import Paragraph, Sentence
from higround.engine.config import load_config
from higround.errors import ConfigError, DataError
from higround.losses import hse as hse_losses
from higround.losses.hse import HSELoss, cluster_hinge, euclidean_recon, vse_hinge
from higround.metrics import paragraph_video_metrics
from higround.models.family import RETRIEVAL
from higround.models.hse import HSE, HSE_FAMILY, LOSS_TERMS, HSEConfig, HSEOutput
from higround.models.hse.decoders import RepeatDecoder
from higround.models.hse.encoders import GRUMaxEncoder, max_over_time
from higround.models.registry import get_family
from higround.text.vocab import Vocabulary

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hse"


# --- the ranking losses: spec §7 cases 1-3 --------------------------------------------------------


def test_vse_hinge_on_the_spec_cases() -> None:
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # Every off-diagonal hinge is 0.2 + 1 - 1 = 0.2: four of them over N^2 = 4.
    assert vse_hinge(same, same).item() == pytest.approx(0.2)
    assert vse_hinge(same, same, norm="n").item() == pytest.approx(0.4)
    assert vse_hinge(same, same, norm="none").item() == pytest.approx(0.8)
    eye = torch.eye(2)
    assert vse_hinge(eye, eye).item() == 0.0
    # Reordering both sides alike leaves it unchanged; a margin of 0.5 passes 0.5 - 1 + 0 < 0.
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    b = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    order = torch.randperm(6, generator=g)
    assert vse_hinge(a[order], b[order]).item() == pytest.approx(vse_hinge(a, b).item(), abs=1e-6)
    assert vse_hinge(eye, eye, margin=0.5).item() == 0.0


def test_cluster_hinge_penalises_only_cosines_above_one_minus_the_margin() -> None:
    x = torch.tensor([[1.0, 0.0], [0.9, math.sqrt(0.19)]])  # cosine 0.9
    assert vse_hinge(x, x).item() == pytest.approx(0.1)  # four hinges of 0.1 over 4
    assert cluster_hinge(x, x).item() == pytest.approx(0.1)
    apart = torch.tensor([[1.0, 0.0], [0.8, 0.6]])  # cosine 0.8: on the margin, no cost
    assert cluster_hinge(apart, apart).item() == pytest.approx(0.0, abs=1e-7)


def test_low_match_over_every_clip_of_the_batch_counts_a_duplicate_sentence() -> None:
    clips = torch.eye(4)  # 2 videos x 2 clips
    assert vse_hinge(clips, clips).item() == 0.0
    sentences = clips.clone()
    sentences[1] = clips[0]  # sentence 2 equals clip 1 (a near-duplicate in the same video)
    # cost over sentences: 0.2 (clip 1 vs sentence 2) + 3 x 0.2 (clip 2 has no positive score);
    # cost over clips: 1.2 + 0.2 + 0.2 (sentence 2 ranks clips 1, 3, 4 above its own); 2.4 / 16.
    assert vse_hinge(clips, sentences).item() == pytest.approx(0.15)


def test_euclidean_reconstruction_is_a_mean_distance_with_detached_targets() -> None:
    recon = torch.tensor([[3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    target = torch.zeros(2, 2, requires_grad=True)
    loss = euclidean_recon(recon, target)
    assert loss.item() == pytest.approx(2.5)  # (5 + 0) / 2
    loss.backward()
    assert target.grad is None and recon.grad is not None
    assert euclidean_recon(recon.detach(), target.detach(), norm="none").item() == pytest.approx(5.0)


def test_the_total_weighs_tau_and_tau_low_and_tau0_drops_exactly_the_reconstruction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = torch.tensor(1.0)
    for name in ("vse_hinge", "cluster_hinge", "euclidean_recon"):
        monkeypatch.setattr(hse_losses, name, lambda *a, **k: one)
    # Each reconstruction term is a sum of two distances, each 1 here.
    full = HSELoss(HSEConfig())(_stub_output(), None)  # type: ignore[arg-type]
    assert set(full) == {*LOSS_TERMS, "total"}
    assert full["total"].item() == pytest.approx(5 + 2 * 5e-4 + 2 * 1e-4)
    tau0 = HSELoss(HSEConfig(reconstruct=False, reconstruct_low=False))(_stub_output(), None)  # type: ignore[arg-type]
    assert set(full) - set(tau0) == {"reconstruction", "reconstruction_low"}
    assert tau0["total"].item() == pytest.approx(5.0)
    weighted = HSEConfig(loss_weights={"reconstruction": 0.05})
    assert HSELoss(weighted)(_stub_output(), None)["total"].item() == pytest.approx(5 + 0.1 + 2e-4)  # type: ignore[arg-type]


def _stub_output() -> HSEOutput:
    return HSEOutput(**dict.fromkeys(HSEOutput.__dataclass_fields__, torch.ones(2, 2)))


# --- encoders, decoders: spec §7 cases 4, 5, 7 -------------------------------------------------------


def test_max_over_time_ignores_padded_steps() -> None:
    outputs = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [9.0, 9.0]]])
    assert max_over_time(outputs, torch.tensor([2])).tolist() == [[3.0, 0.0]]
    assert max_over_time(outputs, torch.tensor([1])).tolist() == [[1.0, -2.0]]


def test_the_gru_encoder_is_blind_to_padding_and_to_the_batch() -> None:
    torch.manual_seed(0)
    encoder = GRUMaxEncoder(3, 5)
    seqs = [torch.randn(n, 3) for n in (4, 1, 7)]
    lengths = torch.tensor([4, 1, 7])
    padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    wider = torch.cat([padded, torch.full((3, 5, 3), 99.0)], dim=1)  # more padding, garbage in it
    out = encoder(padded, lengths)
    assert torch.allclose(encoder(wider, lengths), out, atol=1e-6)
    for i, seq in enumerate(seqs):  # one sequence alone: the same embedding
        assert torch.allclose(encoder(seq[None], lengths[i : i + 1]), out[i : i + 1], atol=1e-6)
    # CMHSE's initialisation: zero biases.
    assert encoder.gru.bias_ih_l0.abs().sum() == 0 and encoder.gru.bias_hh_l0.abs().sum() == 0


def test_the_high_level_starts_from_the_context_and_follows_the_clip_order() -> None:
    torch.manual_seed(0)
    high = GRUMaxEncoder(4, 4)
    clips = torch.randn(1, 3, 4)
    lengths = torch.tensor([3])
    context = torch.randn(1, 4)
    out = high(clips, lengths, context)
    assert not torch.allclose(high(clips, lengths, context + 1), out)
    assert not torch.allclose(high(clips.flip(1), lengths, context), out)
    padded = torch.cat([clips, torch.randn(1, 2, 4)], dim=1)
    assert torch.allclose(high(padded, lengths, context), out, atol=1e-6)


def test_the_frame_decoder_emits_one_row_per_frame_in_clip_order() -> None:
    torch.manual_seed(0)
    decoder = RepeatDecoder(6, 3)
    inputs = torch.randn(3, 6)
    lengths = torch.tensor([5, 1, 80])
    out = decoder(inputs, lengths)
    assert out.shape == (86, 3)
    # Row 5 is the second clip's only frame: what clip 2 alone decodes at its first step.
    assert torch.allclose(out[5], decoder(inputs[1:2], torch.tensor([1]))[0], atol=1e-6)
    assert bool((out.abs() < 1).all())  # hidden states of a GRU: tanh-bounded


# --- the clip protocol: spec §7 case 8 ---------------------------------------------------------------


def test_clip_frames_follow_cmhse() -> None:
    assert span_frames(np.array([[10.2, 20.7]]), 100.0, 200).tolist() == [[20, 42]]  # 23 frames
    assert span_frames(np.array([[30.0, 20.0]]), 100.0, 200).tolist() == [[60, 60]]  # start > end
    assert span_frames(np.array([[99.9, 100.0]]), 100.0, 200).tolist() == [[199, 199]]  # clamped
    index, kept = subsample(np.array([[0, 199]]), 80)
    assert kept.tolist() == [80] and index[0, :5].tolist() == [0, 2, 5, 7, 10]
    expected = np.arange(0, 200, 200 / 80).astype(int)  # CMHSE's own rule
    assert index[0].tolist() == expected.tolist()
    index, kept = subsample(np.array([[20, 42], [3, 3]]), 80)
    assert kept.tolist() == [23, 1] and index[0, :23].tolist() == list(range(20, 43))
    assert uniform_frames(10, 4).tolist() == [[0, 1], [2, 4], [5, 6], [7, 9]]
    assert uniform_frames(2, 4).tolist() == [[0, 0], [0, 0], [1, 1], [1, 1]]
    # DiDeMo: released frames inclusive; an end past the features is the whole video.
    assert indexed_frames(np.array([[0, 149], [120, 160]]), 150).tolist() == [[0, 149], [0, 149]]
    assert indexed_frames(np.array([[30, 150]]), 150).tolist() == [[30, 149]]


def test_didemo_sentences_use_their_released_frames() -> None:
    sentence = Sentence("a man", 1.0, 2.0, 0, "v#0", extra={"frames": (30, 59)})
    paragraph = Paragraph("v", 25.0, (sentence,))
    assert clip_bounds(paragraph, 150, "spans", 4).tolist() == [[30, 59]]
    with pytest.raises(DataError, match="need the video's paragraph"):
        clip_bounds(None, 150, "spans", 4)


# --- the model over a batch ------------------------------------------------------------------------


VOCAB = Vocabulary.build(["a man opens the door", "he walks out now quickly", "she cuts a red apple"])
TEXTS = ["a man opens the door", "he walks out", "she cuts a red apple", "now he walks quickly"]


def _paragraph(video: str, sentences: int, duration: float = 100.0) -> Paragraph:
    return Paragraph(
        video,
        duration,
        tuple(
            Sentence(TEXTS[(i + len(video)) % 4], 20.0 * i, 20.0 * i + 30.0, i, f"{video}#{i}")
            for i in range(sentences)
        ),
    )


def _batch(spec: list[tuple[str, int, int]], dim: int = 6, seed: int = 0, cap: int = 8) -> RetrievalBatch:
    """A batch of (video id, sentences, frames) rows with seeded features per video id."""
    items = []
    for video, sentences, frames in spec:
        rng = np.random.default_rng([zlib.crc32(video.encode()), seed])
        paragraph = _paragraph(video, sentences)
        features = rng.standard_normal((frames, dim)).astype(np.float32)
        items.append(video_item(paragraph, features, encode_paragraph(paragraph, VOCAB), cap, "spans", 4))
    return collate_retrieval(items)


def _model(**kw: object) -> HSE:
    torch.manual_seed(0)
    config = HSEConfig(video_dim=6, word_dim=5, embed_dim=12, num_clips=8, **kw)  # type: ignore[arg-type]
    return HSE(config, torch.randn(len(VOCAB), 5))


def test_an_embedding_does_not_depend_on_the_rest_of_its_batch() -> None:
    model = _model().eval()
    alone = model(_batch([("vid_a", 2, 30)]))
    together = model(_batch([("vid_b", 4, 90), ("vid_a", 2, 30), ("vid_c", 1, 5)]))
    assert alone.videos is not None and together.videos is not None
    assert alone.paragraphs is not None and together.paragraphs is not None
    assert torch.allclose(together.videos[1], alone.videos[0], atol=1e-5)
    assert torch.allclose(together.paragraphs[1], alone.paragraphs[0], atol=1e-5)
    assert alone.clip_recon is None  # decoders run in training only


def test_fse_encodes_all_frames_and_all_words_and_reads_no_clips() -> None:
    flat = dict(
        hierarchical=False,
        context_match=False,
        low_match=False,
        low_cluster=False,
        reconstruct=False,
        reconstruct_low=False,
    )
    model = _model(**flat)
    assert model.video_encoder is None and model.clip_decoder is None
    batch = _batch([("vid_a", 2, 30), ("vid_b", 3, 40)])
    out = model(batch)
    assert out.clips is None and out.videos is out.video_context
    terms = HSELoss(model.config)(out, batch)
    assert set(terms) == {"match", "high_cluster", "total"}


def test_training_output_carries_every_reconstruction() -> None:
    model = _model().train()
    batch = _batch([("vid_a", 2, 30), ("vid_b", 3, 90)])
    out = model(batch)
    frames = int(batch.clip_length.sum())
    assert out.clip_recon is not None and out.clip_recon.shape == (5, 12)
    assert out.frame_recon is not None and out.frame_recon.shape == (frames, 6)
    assert out.frame_target is not None and out.frame_target.shape == (frames, 6)
    assert out.word_recon is not None and out.word_target is not None
    assert out.word_recon.shape == out.word_target.shape == (int(batch.word_mask.sum()), 5)
    terms = HSELoss(model.config)(out, batch)
    terms["total"].backward()
    assert model.frame_decoder is not None and model.frame_decoder.gru.weight_ih_l0.grad is not None


def test_one_side_batches_embed_that_side_only() -> None:
    model = _model().eval()
    full = model(_batch([("vid_a", 2, 30)]))
    video_only = _batch([("vid_a", 2, 30)])
    video_only.words = video_only.words[:, :0]
    video_only.word_mask = video_only.word_mask[:, :0]
    out = model(video_only)
    assert out.paragraphs is None and out.videos is not None and full.videos is not None
    assert torch.allclose(out.videos, full.videos)


# --- configs: the family, the recipes, the supplement's tables ---------------------------------------


def test_the_family_is_a_retrieval_family_of_the_table() -> None:
    assert get_family("hse") is HSE_FAMILY and HSE_FAMILY.task == RETRIEVAL
    with pytest.raises(ConfigError, match="predicts no spans"):
        HSE_FAMILY.predictions(None, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="retrieval model"):
        HSE_FAMILY.check_task("grounding")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"hierarchical": False}, "hierarchical=false"),
        ({"clips": "uniform"}, "low_match pairs clip k"),
        ({"reconstruct": False}, "reconstruct_low decodes"),
        ({"norm": "batch"}, "norm must be one of"),
        ({"eval_clips": "grid"}, "eval_clips must be one of"),
        ({"loss_weights": {"lowmatch": 1.0}}, "unknown loss_weights"),
    ],
)
def test_configs_that_do_not_fit_together_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HSEConfig(**values)  # type: ignore[arg-type]


# Each row of the supplement's Tables 1-3: (recipe, overrides, the loss terms it computes).
ALL = set(LOSS_TERMS)
RECONSTRUCTION = {"reconstruction", "reconstruction_low"}
TABLE_ROWS = [
    ("activitynet_captions.yaml", ["model.high_cluster=false"], ALL - {"high_cluster"}),
    ("activitynet_captions.yaml", ["model.low_match=false"], ALL - {"low_match"}),
    ("activitynet_captions.yaml", ["model.low_cluster=false"], ALL - {"low_cluster"}),
    ("activitynet_captions_tau0.yaml", [], ALL - RECONSTRUCTION),
    ("activitynet_captions.yaml", [], ALL),
    ("activitynet_captions.yaml", ["model.loss_weights.reconstruction=0.05"], ALL),
    ("activitynet_captions_fse.yaml", [], {"match"}),
    ("didemo.yaml", [], ALL),
    ("synthetic.yaml", [], ALL),
    ("synthetic_tau0.yaml", [], ALL - RECONSTRUCTION),
    ("synthetic_fse.yaml", [], {"match"}),
]


@pytest.mark.parametrize(("recipe", "overrides", "terms"), TABLE_ROWS)
def test_every_row_of_the_supplement_tables_is_a_config(
    recipe: str, overrides: list[str], terms: set[str]
) -> None:
    config = load_config(CONFIGS / recipe, overrides)
    model_config = config.model_config(video_dim=config.model["video_dim"] or 64, word_dim=300)
    assert isinstance(model_config, HSEConfig) and set(model_config.terms()) == terms
    tau = 0.05 if "reconstruction=0.05" in " ".join(overrides) else 5e-4
    assert model_config.weight("reconstruction") == tau
    assert model_config.weight("reconstruction_low") == 1e-4
    if not recipe.startswith("synthetic"):  # the official recipe (supp. §1, CMHSE train.py)
        assert (config.optim.lr, config.optim.scheduler, config.optim.step_epochs) == (1e-3, "step", 10)
        assert (config.data.batch_size, config.trainer.max_epochs, model_config.embed_dim) == (64, 15, 1024)
        assert (model_config.margin, model_config.norm, model_config.num_clips) == (0.2, "n_squared", 80)


# --- learning: spec §7 case 11 -----------------------------------------------------------------------


def test_a_small_retrieval_overfit_reaches_r1_100_on_its_training_set() -> None:
    """16 videos x 3 clips; a clip shows the sum of its sentence's word embeddings plus noise."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(24)]
    vocab = Vocabulary.build([" ".join(words)])
    concept = rng.standard_normal((len(words), 8)).astype(np.float32)
    items = []
    for v in range(16):
        sentences, frames = [], []
        for k in range(3):
            chosen = rng.choice(len(words), 3, replace=False)
            sentences.append(
                Sentence(" ".join(words[c] for c in chosen), 10.0 * k, 10.0 * k + 9.9, k, f"v{v}#{k}")
            )
            frames.append(concept[chosen].sum(0) + 0.3 * rng.standard_normal((10, 8)).astype(np.float32))
        paragraph = Paragraph(f"v{v}", 30.0, tuple(sentences))
        items.append(
            video_item(paragraph, np.concatenate(frames), encode_paragraph(paragraph, vocab), 80, "spans", 4)
        )
    batch = collate_retrieval(items)
    torch.manual_seed(0)
    config = HSEConfig(video_dim=8, word_dim=8, embed_dim=32)
    model = HSE(config, torch.randn(len(vocab), 8))
    criterion = HSELoss(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        criterion(model.train()(batch), batch)["total"].backward()
        optimiser.step()
    embeddings = HSE_FAMILY.embeddings(model.eval()(batch), batch)  # type: ignore[misc]
    assert embeddings.videos is not None and embeddings.paragraphs is not None
    similarity = (embeddings.paragraphs @ embeddings.videos.T).detach().numpy()
    metrics = paragraph_video_metrics(similarity)
    assert metrics["p2v/R@1"] == 1.0 and metrics["v2p/R@1"] == 1.0


def test_the_step_schedule_is_a_function_of_the_epoch() -> None:
    from types import SimpleNamespace

    from higround.engine.trainer import StepSchedule

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimiser = torch.optim.Adam([parameter], lr=123.0)
    schedule = StepSchedule(1e-3, 0.1, 10)  # HSE's: x0.1 every 10 epochs
    for epoch, rate in ((0, 1e-3), (9, 1e-3), (10, 1e-4), (14, 1e-4), (25, 1e-5), (3, 1e-3)):
        trainer = SimpleNamespace(current_epoch=epoch, optimizers=[optimiser])
        schedule.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
        assert optimiser.param_groups[0]["lr"] == pytest.approx(rate)
    with pytest.raises(ConfigError, match="step_gamma"):
        load_config(CONFIGS / "base.yaml", ["optim.step_gamma=0"])


def test_validation_embeddings_keep_one_row_per_video_whatever_the_split_across_ranks() -> None:
    from higround.engine.retrieval import Embeddings, gather_embeddings, retrieval_scores

    eye = np.eye(3, dtype=np.float32)
    # Two "ranks" in another order, the last video repeated by a distributed sampler's padding.
    parts = [
        Embeddings(["c", "a"], eye[[2, 0]], eye[[2, 0]]),
        Embeddings(["b", "c"], eye[[1, 2]], eye[[1, 2]]),
    ]
    merged = gather_embeddings(parts)
    assert merged.video_ids == ["a", "b", "c"] and np.array_equal(merged.videos, eye)
    metrics = retrieval_scores(merged)
    assert metrics["p2v/R@1"] == 1.0 and metrics["rsum"] == pytest.approx(6.0)
    assert retrieval_scores(merged, "hse")["rsum"] == pytest.approx(600.0)
