"""The sentence unit (``data.unit: sentence``): one sentence and its video per sample, from the real
annotation files of every sentence benchmark, padding-invariant, with same-video grouping, and
evaluated by the one evaluator through the engine's unchanged prediction path."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_family import FAKE_FAMILY
from higround.data.batch import ParagraphBatch
from higround.data.batching import collate_paragraphs
from higround.data.dataset import SENTENCE, make_item, samples, sentence_view
from higround.data.features import write_hdf5_store
from higround.data.readers import load_dataset
from higround.data.schema import Paragraph
from higround.engine import Grounder, fit
from higround.engine.config import Config, merge, parse_overrides, read_yaml
from higround.engine.datamodule import GroundingDataModule
from higround.engine.evaluation import open_checkpoint
from higround.errors import ConfigError
from higround.metrics import (
    align_predictions,
    read_predictions,
    score_alignment,
    threshold_label,
    thresholds_for,
    write_predictions,
)
from higround.models import registry
from higround.models.family import ModelFamily
from higround.models.hscnet.family import HSCNET_FAMILY
from higround.text.vocab import Vocabulary

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hscnet"
DIM = 4


def _raw_sentence_count(path: Path) -> int:
    """Sentences (queries) in an annotation file, counted from its raw records."""
    if path.suffix == ".txt":  # Charades-STA: one "vid start end##sentence" line per sentence
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    if path.suffix == ".jsonl":  # QVHighlights: one query per line
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    return sum(len(r["sentences"]) for r in json.loads(path.read_text()).values())


# (reader, split, file): the test split of each sentence benchmark (the CG sets: novel words).
BENCHMARKS = [
    ("charades_sta", "test", "charades_sta_test.txt"),
    ("tacos", "test", "test.json"),
    ("activitynet_captions", "val_2", "val_2.json"),
    ("charades_cg", "novel_word", "novel_word.json"),
    ("activitynet_cg", "novel_word", "novel_word.json"),
    ("qvhighlights", "val", "highlight_val_release.jsonl"),
]


@pytest.mark.parametrize(("reader", "split", "file"), BENCHMARKS, ids=[b[0] for b in BENCHMARKS])
def test_sentence_samples_from_the_real_files(
    reader: str, split: str, file: str, shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / reader
    annotations = load_dataset(reader, root, split)
    rng = np.random.default_rng(0)
    store = tmp_path / "features.hdf5"
    write_hdf5_store(
        store, {v.video_id: rng.standard_normal((int(rng.integers(3, 9)), DIM)) for v in annotations.videos}
    )
    config = Config.from_dict(
        {
            "data": {
                "dataset": reader,
                "root": str(root),
                "features": str(store),
                "train_split": split,  # the vocabulary's split
                "val_split": None,
                "test_split": split,
                "unit": "sentence",
                "num_workers": 0,
                "eval_batch_size": 512,
            },
            "model": {"num_clips": 8},
        }
    )
    data = GroundingDataModule(config)
    assert data.unit == SENTENCE
    rows = data.samples(split)
    sentences = [(p, s) for p, s in annotations.sentences()]
    # One sample per sentence of the file, in file order, each a one-sentence paragraph.
    assert len(data.dataset(split)) == len(rows) == len(sentences) == _raw_sentence_count(root / file)
    assert all(len(r.sentences) == 1 for r in rows)
    keys = [s.key for _, s in sentences]
    assert [r.sentences[0].key for r in rows] == keys and len(set(keys)) == len(keys)
    if reader == "qvhighlights":  # the release's query id; the span is the first window as read
        qids = [str(json.loads(line)["qid"]) for line in (root / file).read_text().splitlines() if line]
        assert sorted(keys) == sorted(qids)  # the reader groups queries by video
        assert all(s.span == s.windows[0] for _, s in sentences)
        assert any(len(s.windows) > 1 for _, s in sentences)
    else:
        assert keys == [f"{p.video_id}#{s.index}" for p, s in sentences]

    loader = data.loader(split)
    batches: list[ParagraphBatch] = [next(iter(loader))]
    batch = batches[0]
    b = len(batch)
    assert b == min(512, len(rows))
    assert batch.sentence_mask.shape == (b, 1) and bool(batch.sentence_mask.all())
    assert [k for row in batch.sentence_keys for k in row] == keys[:b]
    assert batch.video_ids == [p.video_id for p, _ in sentences[:b]]
    assert batch.sentence_index[:, 0].tolist() == [s.index for _, s in sentences[:b]]
    expected = torch.tensor([[s.span[0] / p.duration, s.span[1] / p.duration] for p, s in sentences[:b]])
    torch.testing.assert_close(batch.spans[:, 0], expected)
    # Same-video grouping: one comparison of video_group is the (B, B) mask of shared videos.
    ids = np.asarray(batch.video_ids, dtype=object)
    same = torch.from_numpy(ids[:, None] == ids[None, :])
    assert torch.equal(batch.same_video(), same)
    assert batch.video_group.tolist()[0] == 0 and int(batch.video_group.max()) + 1 == len(
        set(batch.video_ids)
    )
    if reader != "qvhighlights":  # every sentence benchmark has videos with several sentences
        assert int(same.sum()) > b


def _vocab() -> Vocabulary:
    return Vocabulary.build(["a man opens the fridge", "he takes a carrot out of it", "the man cuts it"])


def test_a_sentence_alone_and_in_a_padded_batch_collates_the_same(shared_data: Path) -> None:
    paragraph = load_dataset("tacos", shared_data / "tacos", "test").paragraphs()[0]
    rows = sentence_view([paragraph])
    vocab = _vocab()
    rng = np.random.default_rng(3)
    # Clip counts differ per row, so the video mask pads too; word counts differ by sentence.
    items = [
        make_item(r, rng.standard_normal((20, DIM)), vocab, n)
        for r, n in zip(rows[:4], (5, 9, 3, 7), strict=True)
    ]
    assert len({len(it.words) for it in items}) > 1
    batch = collate_paragraphs(items)
    assert batch.video_group.tolist() == [0, 0, 0, 0] and bool(batch.same_video().all())
    for b, item in enumerate(items):
        alone = collate_paragraphs([item])
        for f in fields(ParagraphBatch):
            got, full = getattr(alone, f.name), getattr(batch, f.name)
            if f.name in ("video_ids", "sentence_keys"):
                assert got == [full[b]]
            elif f.name in ("durations", "paragraph_index", "video_group"):
                assert torch.equal(got, full[b : b + 1])  # one video: group 0 alone and in the batch
            elif got is None:  # optional labels (windows, saliency, text features) this data lacks
                assert full is None, f.name
            else:
                assert torch.equal(got, full[b : b + 1, : got.shape[1]]), f.name
                rest = full[b, got.shape[1] :]
                assert (rest == (-1 if f.name in ("word_sentence", "sentence_index") else 0)).all(), f.name
    assert [k for row in batch.sentence_keys for k in row] == [s.key for s in paragraph.sentences[:4]]


def test_the_unit_switch_is_typed_checked_and_defaults_to_the_family() -> None:
    assert Config().data.unit is None and Config().unit == "paragraph" == HSCNET_FAMILY.unit
    assert Config.from_dict({"data": {"unit": "sentence"}}).unit == "sentence"
    with pytest.raises(
        ConfigError, match=r"data\.unit must be 'paragraph' or 'sentence' \(or null\), got 'word'"
    ):
        Config.from_dict({"data": {"unit": "word"}})
    with pytest.raises(ConfigError, match=r"data\.unit"):
        Config.from_dict({"data": {"unit": 1}})
    with pytest.raises(ValueError, match="unit must be one of"):
        dataclasses.replace(HSCNET_FAMILY, unit="word")
    paragraphs = [Paragraph("v", 10.0, ())]
    assert samples(paragraphs, "paragraph") == paragraphs
    with pytest.raises(ValueError, match="data unit must be one of"):
        samples(paragraphs, "video")


SENTENCE_FAMILY: ModelFamily = dataclasses.replace(FAKE_FAMILY, name="fake_sentence", unit=SENTENCE)


def test_a_sentence_family_trains_and_is_scored_by_the_one_evaluator(
    tmp_path: Path, shared_data: Path, tacos_features: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.FAMILIES, "fake_sentence", SENTENCE_FAMILY)
    recipe = read_yaml(CONFIGS / "tacos.yaml")
    recipe.pop("model")
    overrides = [
        f"data.root={shared_data / 'tacos'}",
        f"data.features={tacos_features}",
        "data.train_split=test",
        "data.val_split=test",
        "data.limit=3",
        "data.batch_size=8",
        "data.num_workers=0",
        "model.family=fake_sentence",
        "model.num_clips=16",
        "model.proposals=6",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output_dir={tmp_path}",
        "name=sentences",
    ]
    config = Config.from_dict(merge(recipe, parse_overrides(overrides)))
    assert config.data.unit is None and config.unit == SENTENCE  # the family's unit
    with pytest.raises(ConfigError, match="grounds one sentence per sample"):
        Config.from_dict(merge(recipe, parse_overrides([*overrides, "data.unit=paragraph"])))

    result = fit(config)
    assert result.best_checkpoint is not None
    run = open_checkpoint(result.best_checkpoint, device="cpu", limit=3, batch_size=5)
    assert run.data.unit == SENTENCE
    paragraphs = run.data.paragraphs("test")
    batch = next(iter(run.data.loader("test")))
    assert batch.sentence_mask.shape == (5, 1)
    records = run.records("test")
    # The same records as a paragraph run writes: one per sentence, in annotation order, by key.
    assert [r.key for r in records] == [s.key for p in paragraphs for s in p.sentences]
    assert [r.paragraph_index for r in records] == [p.index for p in paragraphs for _ in p.sentences]
    assert all(len(r.spans) == 6 and r.scores is not None for r in records)

    dataset = run.data.annotations("test")
    path = tmp_path / "predictions.json"
    write_predictions(path, records, dataset="tacos_paragraphs", split="test")
    for inclusive in (True, False):  # the hit rule by flag, as `higround evaluate --exclusive`
        metrics = score_alignment(align_predictions(records, dataset), inclusive=inclusive)
        again = score_alignment(align_predictions(read_predictions(path), dataset), inclusive=inclusive)
        assert metrics == again
        columns = [threshold_label(m) for m in thresholds_for("tacos_paragraphs")]  # 0.1, 0.3, 0.5
        assert {*(f"R{n}@{m}" for n in (1, 5) for m in columns), "mIoU"} <= set(metrics)
        assert all(0 <= v <= 1 for v in metrics.values())
        assert all(metrics[f"R5@{m}"] >= metrics[f"R1@{m}"] for m in columns)

    # Grounder grounds a sentence family's sentences one row each.
    features = np.random.default_rng(1).standard_normal((30, 24)).astype(np.float32)
    out = Grounder.from_checkpoint(result.best_checkpoint).ground(
        features, ["The person takes out a knife.", "She slices the carrot."], 60.0
    )
    assert len(out.spans) == 2 and all(0 <= s <= e <= 60.0 for s, e in out.spans)
