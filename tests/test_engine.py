"""Training engine: config layering and validation, checkpoints, exact resume, the Python API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from higround.data.batching import collate_paragraphs
from higround.data.dataset import make_item
from higround.data.schema import Paragraph, Sentence
from higround.engine import Grounder, export_safetensors, fit, load_checkpoint, load_config, save_checkpoint
from higround.engine import trainer as trainer_module
from higround.engine.config import Config, DataConfig, parse_overrides
from higround.engine.datamodule import EpochShuffleSampler, GroundingDataModule
from higround.engine.inference import SentencePredictions, gather_predictions
from higround.engine.trainer import AtomicCheckpointIO, paper_notes, resolve_paths, resolve_precision
from higround.errors import ConfigError, DataError
from higround.models import HSCNet
from higround.text.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "hscnet"


# --- config ---------------------------------------------------------------------------------------


def test_dataset_recipes_hold_the_papers_settings() -> None:
    tacos = load_config(CONFIGS / "tacos.yaml")
    anet = load_config(CONFIGS / "activitynet_captions.yaml")
    assert (tacos.model["num_clips"], anet.model["num_clips"]) == (512, 256)
    assert [tacos.model[k] for k in ("word_layers", "sentence_layers", "paragraph_layers")] == [3, 3, 3]
    assert [anet.model[k] for k in ("word_layers", "sentence_layers", "paragraph_layers")] == [1, 1, 1]
    assert (tacos.data.batch_size, anet.data.batch_size) == (16, 32)
    assert (tacos.model["video_dim"], anet.model["video_dim"]) == (4096, 500)
    assert anet.data.feature_key == "{video_id}/c3d_features"
    assert (anet.data.max_sentences, anet.data.test_split) == (8, "val_2")
    assert tacos.data.dataset == "tacos_paragraphs"
    for config in (tacos, anet):  # merged from base.yaml
        assert (config.optim.lr, config.optim.weight_decay) == (1e-4, 0.0)
        assert config.model["hidden_dim"] == 256 and config.model["temperature"] == 0.2
        assert config.model["word_dim"] is None and config.text.word_vectors == "glove-6b-50d"


RECIPES = sorted(p for p in CONFIGS.glob("*.yaml") if p.name not in ("base.yaml", "synthetic.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_benchmark_recipes_load_their_released_files(recipe: Path, shared_data: Path) -> None:
    # Every split of the real benchmark, read with the recipe's dataset, on_bad and max_sentences.
    config = load_config(recipe, [f"data.root={shared_data}"])
    data = GroundingDataModule(config)
    splits = (config.data.train_split, config.data.val_split, config.data.test_split)
    for split in splits:
        assert split is not None and data.paragraphs(split)
    skipped = {s: [r.key for r in data.annotations(s).report.skipped] for s in splits}
    # The recipe's comment and docs/training.md state these counts.
    expected = {
        "activitynet_captions": {"train": ["v_0bosp4-pyTM#3", "v_rhOtqArO-3Y#5"], "val_1": [], "val_2": []},
        "tacos": {"train": [], "val": [], "test": []},
    }
    assert skipped == expected[recipe.stem]
    assert config.data.on_bad == ("skip" if any(skipped.values()) else "error")


def test_error_stays_the_default_bad_record_policy() -> None:
    assert DataConfig().on_bad == "error"
    assert load_config(CONFIGS / "base.yaml").data.on_bad == "error"


def test_paper_recipes_note_other_word_vectors(tmp_path: Path) -> None:
    tacos = load_config(CONFIGS / "tacos.yaml")
    anet = load_config(CONFIGS / "activitynet_captions.yaml")
    assert tacos.text.paper_word_vectors == anet.text.paper_word_vectors == "glove.840B.300d"
    (note,) = paper_notes(tacos)
    assert note.startswith("text.word_vectors=glove-6b-50d is not the paper's glove.840B.300d")
    assert paper_notes(load_config(CONFIGS / "tacos.yaml", ["text.word_vectors=learned"]))
    for paper_file in ("/data/glove.840B.300d.txt", "glove.840B.300d.zip", "g/glove.840B.300d.txt.gz"):
        assert paper_notes(load_config(CONFIGS / "tacos.yaml", [f"text.word_vectors={paper_file}"])) == []
    assert paper_notes(load_config(CONFIGS / "synthetic.yaml")) == []  # follows no paper
    # notes round-trip through a run's config.yaml
    noted = Config.from_dict({**tacos.to_dict(), "notes": [note]})
    assert Config.from_dict(yaml.safe_load(yaml.safe_dump(noted.to_dict()))) == noted


def test_resolve_paths_makes_the_recorded_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vectors.txt").write_text("the 0.1 0.2\n")
    given = ["data.root=ann", "data.features=f.hdf5", "resume=runs/x/last.ckpt"]
    config = resolve_paths(load_config(None, [*given, "text.word_vectors=vectors.txt"]))
    assert (config.data.root, config.data.features) == (str(tmp_path / "ann"), str(tmp_path / "f.hdf5"))
    assert config.resume == str(tmp_path / "runs" / "x" / "last.ckpt")
    assert config.text.word_vectors == str(tmp_path / "vectors.txt")
    # Names of vector sources, and a missing file (left for the reader to report as given), stay.
    for source in ("glove-6b-50d", "learned", "missing.txt"):
        assert resolve_paths(load_config(None, [f"text.word_vectors={source}"])).text.word_vectors == source


def test_overrides_are_typed_and_nested() -> None:
    config = load_config(
        CONFIGS / "tacos.yaml",
        [
            "data.features=/x/tall_c3d_features.hdf5",
            "optim.lr=3e-4",  # YAML 1.1 reads this as a string: still a float
            "trainer.devices=2",
            "trainer.gradient_clip_val=null",
            "eval.thresholds=[0.3, 0.5]",
            "model.loss_weights.grounding_l1=2",
            "name=123",
        ],
    )
    assert config.data.features == "/x/tall_c3d_features.hdf5"
    assert config.optim.lr == pytest.approx(3e-4) and isinstance(config.optim.lr, float)
    assert config.trainer.devices == 2 and config.trainer.gradient_clip_val is None
    assert config.eval.thresholds == [0.3, 0.5]
    assert config.model["loss_weights"] == {"grounding_l1": 2.0}
    assert config.name == "123"
    assert config.model["num_clips"] == 512  # untouched keys keep the recipe's value
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}
    # A key template stays text (YAML alone would read {video_id} as a set); real mappings parse.
    assert parse_overrides(["data.feature_key={video_id}/c3d_features"]) == {
        "data": {"feature_key": "{video_id}/c3d_features"}
    }
    assert parse_overrides(["data.feature_key={video_id}"]) == {"data": {"feature_key": "{video_id}"}}
    assert parse_overrides(["model.loss_weights={grounding_l1: 2}"]) == {
        "model": {"loss_weights": {"grounding_l1": 2}}
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.featurs=/x", "unknown key 'data.featurs' (did you mean 'data.features'?)"),
        ("model.hiden_dim=8", "unknown key 'model.hiden_dim' (did you mean 'model.hidden_dim'?)"),
        ("trainr.max_epochs=1", "unknown key 'trainr'"),
        ("model.loss_weights.nope=1", "unknown loss_weights ['nope']"),
        ("trainer.max_epochs=ten", "trainer.max_epochs must be int, got 'ten'"),
        ("trainer.deterministic=3", "trainer.deterministic must be bool"),
        ("data.batch_size=0", "data.batch_size must be >= 1"),
        ("data.on_bad=ignore", "data.on_bad must be 'error' or 'skip'"),
        ("model.hidden_dim=30", "not divisible by num_heads"),
        ("novalue", "not of the form section.key=value"),
    ],
)
def test_bad_keys_and_values_raise_config_error(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "tacos.yaml", [override])
    assert message in str(err.value)


def test_unknown_key_in_a_file_and_base_layering(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("seed: 7\ndata:\n  batch_size: 3\n  num_workers: 0\n")
    (tmp_path / "run.yaml").write_text("base: base.yaml\ndata:\n  batch_size: 5\n")
    config = load_config(tmp_path / "run.yaml")
    assert (config.seed, config.data.batch_size, config.data.num_workers) == (7, 5, 0)
    (tmp_path / "bad.yaml").write_text("base: base.yaml\ntrainer:\n  max_epoch: 3\n")
    with pytest.raises(ConfigError, match=r"trainer\.max_epoch' \(did you mean 'trainer\.max_epochs'"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")


def test_model_dimensions_come_from_the_data() -> None:
    config = load_config(CONFIGS / "tacos.yaml", ["model.video_dim=null"])
    model = config.model_config(video_dim=64, word_dim=50)
    assert (model.video_dim, model.word_dim, model.num_clips) == (64, 50, 512)
    with pytest.raises(ConfigError, match=r"model\.video_dim=4096 but the features have 500 channels"):
        load_config(CONFIGS / "tacos.yaml").model_config(video_dim=500, word_dim=50)
    assert Config.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("bf16_cpu", [True, False])
def test_auto_precision_follows_the_cpu_and_the_family(
    bf16_cpu: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: bf16_cpu)
    cpu = ["trainer.accelerator=cpu"]
    wide = "bf16-mixed" if bf16_cpu else "32-true"
    # HSCNet measured bf16 faster from hidden_dim 128 up (docs/benchmarks.md), slower at 64.
    assert resolve_precision(load_config(CONFIGS / "tacos.yaml", cpu)) == wide
    assert resolve_precision(load_config(CONFIGS / "tacos.yaml", [*cpu, "model.hidden_dim=128"])) == wide
    assert resolve_precision(load_config(CONFIGS / "tacos.yaml", [*cpu, "model.hidden_dim=64"])) == "32-true"
    assert resolve_precision(load_config(CONFIGS / "synthetic.yaml", cpu)) == "32-true"
    # Launch-bound on a GPU; a family without measurements stays in float32.
    assert resolve_precision(load_config(CONFIGS / "tacos.yaml", ["trainer.accelerator=gpu"])) == "32-true"
    prvg = REPO / "configs" / "prvg" / "activitynet_captions.yaml"
    assert resolve_precision(load_config(prvg, cpu)) == "32-true"
    # An explicit precision is kept whatever the CPU.
    fp32 = [*cpu, "trainer.precision=32-true"]
    assert resolve_precision(load_config(CONFIGS / "tacos.yaml", fp32)) == "32-true"
    assert resolve_precision(load_config(None, ["trainer.precision=bf16-mixed"])) == "bf16-mixed"


# --- data plumbing ----------------------------------------------------------------------------------


def test_epoch_sampler_ignores_the_global_rng() -> None:
    sampler = EpochShuffleSampler(10, seed=3)
    torch.manual_seed(0)
    first = list(sampler)
    torch.manual_seed(1)
    assert list(sampler) == first and sorted(first) == list(range(10))
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_predictions_are_deduplicated_and_sorted() -> None:
    def part(vids: list[str], idx: list[int]) -> SentencePredictions:
        n = len(vids)
        spans = np.arange(2 * n, dtype=float).reshape(n, 2)
        ints = np.asarray(idx, dtype=np.int64)
        return SentencePredictions(np.asarray(vids, dtype=object), ints, spans, spans)

    # Two "ranks": the second repeats b#0 as a distributed sampler's padding would.
    merged = gather_predictions([part(["b", "a"], [0, 1]), part(["a", "b"], [0, 0])])
    assert list(zip(merged.video_ids, merged.sentence_index, strict=True)) == [("a", 0), ("a", 1), ("b", 0)]
    assert merged.spans.tolist() == [[0.0, 1.0], [2.0, 3.0], [0.0, 1.0]]


def _gather_worker(rank: int, init: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    # Rank 1 holds a repeat of rank 0's first sentence, as DistributedSampler padding makes.
    vids, idx = (["v2", "v1"], [3, 0]) if rank == 0 else (["v1", "v2"], [1, 3])
    n = len(vids)
    spans = np.full((n, 2), float(rank))
    ints = np.asarray(idx, dtype=np.int64)
    part = SentencePredictions(np.asarray(vids, dtype=object), ints, spans, spans)
    merged = gather_predictions([part])
    Path(f"{out}.{rank}").write_text(
        json.dumps([list(map(str, merged.video_ids)), merged.sentence_index.tolist()])
    )
    torch.distributed.destroy_process_group()


def test_predictions_are_gathered_across_ranks(tmp_path: Path) -> None:
    out = str(tmp_path / "gathered")
    torch.multiprocessing.spawn(_gather_worker, args=(f"file://{tmp_path / 'init'}", out), nprocs=2)
    expected = [["v1", "v1", "v2"], [0, 1, 3]]
    assert [json.loads(Path(f"{out}.{r}").read_text()) for r in (0, 1)] == [expected, expected]


# --- checkpoints ------------------------------------------------------------------------------------


def _tiny(tiny_model: list[str]) -> tuple[Config, HSCNet, Vocabulary, object]:
    config = load_config(CONFIGS / "tacos.yaml", [*tiny_model, "model.video_dim=12"])
    vocab = Vocabulary.build(["a man opens the fridge", "he takes a carrot out", "the man cuts it"])
    torch.manual_seed(0)
    model = HSCNet(config.model_config(word_dim=8), torch.randn(len(vocab), 8)).eval()
    paragraph = Paragraph(
        "s1-d1.avi",
        40.0,
        (Sentence("a man opens the fridge", 2.0, 9.0, 0, "k0"), Sentence("he cuts it", 9.0, 30.0, 1, "k1")),
    )
    features = np.random.default_rng(0).standard_normal((23, 12)).astype(np.float32)
    batch = collate_paragraphs([make_item(paragraph, features, vocab, 16)])
    return config, model, vocab, batch


def test_checkpoint_round_trip_needs_no_other_file(tmp_path: Path, tiny_model: list[str]) -> None:
    config, model, vocab, batch = _tiny(tiny_model)
    path = tmp_path / "a" / "model.ckpt"
    save_checkpoint(path, model, config, vocab)
    alone = tmp_path / "elsewhere" / "m.ckpt"
    alone.parent.mkdir()
    shutil.move(path, alone)
    shutil.rmtree(tmp_path / "a")
    assert [p.name for p in alone.parent.iterdir()] == ["m.ckpt"]

    loaded = load_checkpoint(alone)
    assert loaded.vocab == vocab
    assert loaded.model_config == model.config
    assert loaded.config.data == config.data and loaded.config.optim == config.optim
    rebuilt = loaded.build_model()
    with torch.no_grad():
        expected, got = model(batch), rebuilt(batch)
    torch.testing.assert_close(got.spans, expected.spans, rtol=0, atol=0)
    torch.testing.assert_close(rebuilt.embedding.weight, model.embedding.weight, rtol=0, atol=0)

    weights, sidecar = export_safetensors(alone, tmp_path / "export" / "hscnet.safetensors")
    assert (
        sidecar.name == "hscnet.json" and json.loads(sidecar.read_text())["vocab"]["words"] == vocab.words[2:]
    )
    exported = load_checkpoint(weights).build_model()
    with torch.no_grad():
        torch.testing.assert_close(exported(batch).spans, expected.spans, rtol=0, atol=0)


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(ConfigError, match="not a higround checkpoint"):
        load_checkpoint(tmp_path / "plain.ckpt")
    (tmp_path / "w.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="sidecar"):
        load_checkpoint(tmp_path / "w.safetensors")


class _Unpicklable:
    def __reduce__(self) -> str:
        raise RuntimeError("the save fails half-way")


def test_atomic_checkpoint_io_never_leaves_partial_files(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "c.ckpt"
    io.save_checkpoint({"x": torch.ones(2)}, target)
    with pytest.raises(RuntimeError, match="half-way"):
        io.save_checkpoint({"x": torch.zeros(2), "f": _Unpicklable()}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]
    assert torch.load(target, weights_only=True)["x"].tolist() == [1.0, 1.0]


# --- training ---------------------------------------------------------------------------------------


def _train_overrides(shared_data: Path, features: Path, model: list[str], out: Path) -> list[str]:
    return [
        f"data.root={shared_data / 'tacos'}",
        f"data.features={features}",
        "data.train_split=test",
        "data.val_split=null",
        "data.limit=6",
        "data.batch_size=2",
        "data.num_workers=0",
        *model,
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output_dir={out}",
    ]


def test_resume_continues_exactly(
    tmp_path: Path, shared_data: Path, tacos_features: Path, tiny_model: list[str]
) -> None:
    # A worker process makes the loader draw its first indices eagerly, before Lightning sets the
    # epoch on the sampler: the resumed run must still see epoch 1's order.
    common = [
        *_train_overrides(shared_data, tacos_features, tiny_model, tmp_path),
        "model.dropout=0.3",
        "data.num_workers=1",
    ]
    straight = fit(load_config(CONFIGS / "tacos.yaml", [*common, "name=straight", "trainer.max_epochs=2"]))
    first = fit(load_config(CONFIGS / "tacos.yaml", [*common, "name=split", "trainer.max_epochs=1"]))
    assert first.last_checkpoint is not None and load_checkpoint(first.last_checkpoint).epoch == 0
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        fit(load_config(CONFIGS / "tacos.yaml", [*common, "name=split", "trainer.max_epochs=2"]))
    resumed = fit(
        load_config(
            CONFIGS / "tacos.yaml",
            [*common, "name=split", "trainer.max_epochs=2", f"resume={first.last_checkpoint}"],
        )
    )
    assert straight.last_checkpoint is not None and resumed.last_checkpoint is not None
    a = load_checkpoint(straight.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    assert a.epoch == b.epoch == 1
    for key, value in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[key], value, rtol=0, atol=1e-6, msg=key)

    # The per-epoch training loss logged by both runs for epoch 1 is the same.
    def epoch_loss(run: Path) -> float:
        rows = [
            line.split(",")
            for csv in sorted((run / "csv").glob("version_*/metrics.csv"))
            for line in csv.read_text().splitlines()
        ]
        header = rows[0]
        col = header.index("train/loss")
        return float(next(r[col] for r in rows if r[0] == "1" and r[col]))

    assert epoch_loss(resumed.run_dir) == pytest.approx(epoch_loss(straight.run_dir), rel=1e-6)


def test_grounder_grounds_a_paragraph_from_raw_features(
    tmp_path: Path, shared_data: Path, tacos_features: Path, tiny_model: list[str]
) -> None:
    overrides = [*_train_overrides(shared_data, tacos_features, tiny_model, tmp_path), "trainer.max_epochs=1"]
    result = fit(load_config(CONFIGS / "tacos.yaml", overrides))
    assert result.weights is not None and result.best_checkpoint is not None
    grounder = Grounder.from_checkpoint(result.best_checkpoint)
    features = np.random.default_rng(1).standard_normal((37, 24)).astype(np.float32)
    sentences = ["The person takes out a cutting board.", "She washes the carrot.", "She slices it!"]
    out = grounder.ground(features, sentences, duration=75.0)
    assert len(out.spans) == len(out.sentence_spans) == 3
    assert all(0.0 <= s <= e <= 75.0 for s, e in out.spans)
    assert out.paragraph_span is not None and 0.0 <= out.paragraph_span[0] <= out.paragraph_span[1] <= 75.0
    assert out.words[2] == ["she", "slices", "it"]
    assert out.word_spans is not None and [len(w) for w in out.word_spans] == [7, 4, 3]
    # The exported safetensors weights give the same answer.
    assert Grounder.from_checkpoint(result.weights).ground(features, sentences, 75.0) == out
    with pytest.raises(DataError, match=r"expects \(T >= 1, 24\)"):
        grounder.ground(features[:, :10], sentences, 75.0)
    with pytest.raises(DataError, match="duration"):
        grounder.ground(features, sentences, 0.0)
    with pytest.raises(DataError, match="has no word token"):
        grounder.ground(features, ["...", "a man"], 10.0)


def test_a_run_records_absolute_paths_and_its_departures_from_the_paper(
    tmp_path: Path,
    shared_data: Path,
    tacos_features: Path,
    tiny_model: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tacos").symlink_to(shared_data / "tacos")
    Path("feats.hdf5").symlink_to(tacos_features)
    overrides = [
        *_train_overrides(Path("."), Path("feats.hdf5"), tiny_model, Path("runs")),
        "trainer.max_epochs=1",
    ]
    with caplog.at_level("WARNING", logger="higround.engine.trainer"):
        result = fit(load_config(CONFIGS / "tacos.yaml", overrides))
    warned = [r.getMessage() for r in caplog.records if r.name == "higround.engine.trainer"]
    assert warned == [
        "not the paper's setting: text.word_vectors=glove-6b-50d is not the paper's glove.840B.300d: "
        "results are not comparable with the paper's table"
    ]
    recorded = Config.from_dict(yaml.safe_load((result.run_dir / "config.yaml").read_text()))
    assert result.last_checkpoint is not None
    stored = load_checkpoint(result.last_checkpoint).config
    for config in (recorded, stored):
        assert config.notes == [warned[0].removeprefix("not the paper's setting: ")]
        assert config.data.root == str(tmp_path / "tacos")
        assert config.data.features == str(tmp_path / "feats.hdf5")
