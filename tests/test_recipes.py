"""Every dataset recipe of the sentence families and of PRVG trains, evaluates and predicts as released.

Each recipe of ``configs/tan2d/``, ``configs/lgi/`` (its ``*_sscs`` variant included),
``configs/prvg/``, ``configs/moment_detr/`` and ``configs/qd_detr/`` runs on the real annotation
files of its benchmark and on small random features written in that benchmark's release layout (the
recipe's own ``data.feature_key`` and ``model.video_dim``), with the recipe's shapes (clips, 2D-TAN's
map, LGI's phrases, the DETRs' queries) and only its widths shrunk: one epoch of ``fit``, then the
checkpoint predicts and is scored by the one evaluator (QVHighlights: the highlight metrics too). A
SHINE recipe (``*_shine``) trains on negatives the offline generator writes for the split it trains on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from higround.data.features import write_hdf5_store
from higround.data.negatives import generate_negatives, write_negatives
from higround.data.readers import load_dataset
from higround.engine import fit
from higround.engine.config import Config, merge, parse_overrides, read_yaml
from higround.engine.evaluation import open_checkpoint
from higround.metrics import evaluate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAMILIES = ("tan2d", "lgi", "prvg", "moment_detr", "qd_detr")
RECIPES = sorted(
    p for family in FAMILIES for p in (CONFIGS / family).glob("*.yaml")
    if p.stem != "base" and not p.stem.startswith("synthetic")
)  # fmt: skip
# Narrow widths; every shape the recipe fixes (clips, map layout, kernels, phrases) stays.
NARROW = {
    "tan2d": ["model.hidden_dim=8", "model.text_hidden_dim=8", "model.lstm_layers=1", "model.map_layers=1"],
    "lgi": [
        "model.hidden_dim=16",
        "model.lstm_hidden=8",
        "model.lstm_layers=1",
        "model.attention_dim=8",
        "model.regression_dim=16",
    ],
    "prvg": ["model.hidden_dim=16", "model.num_heads=2", "model.ffn_dim=32", "model.lstm_layers=1"],
    "moment_detr": ["model.hidden_dim=16", "model.num_heads=2", "model.ffn_dim=32"],
    "qd_detr": ["model.hidden_dim=16", "model.num_heads=2", "model.ffn_dim=32"],
}
# Ranked spans per sentence, where a family gives more than one.
RANKED = {"tan2d": 5, "moment_detr": 10, "qd_detr": 10}
SSCS_NARROW = ["model.sscs.dim=8", "model.sscs.decoder_hidden=8", "model.sscs.gt_encoder_heads=2"]
# Per benchmark: the split of ../shared/data to train and test on, and how many of its videos (a TACoS
# video has about 150 sentences: one is enough).
DATA = {
    "charades_sta": ("test", 3),
    "tacos": ("test", 1),
    "tacos_paragraphs": ("test", 2),
    "activitynet_captions": ("val_2", 3),
    "qvhighlights": ("val", 3),
    "charades_cg": ("test_trivial", 3),
    "activitynet_cg": ("test_trivial", 3),
}
# The folder of ../shared/data holding a reader's files, where it is not named after the reader.
FOLDER = {"tacos_paragraphs": "tacos"}


@pytest.fixture(scope="module")
def negatives(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Callable[[str, str], Path]:
    """SHINE negatives of a benchmark's split (the generator's), written once per module."""
    written: dict[tuple[str, str], Path] = {}

    def write(name: str, split: str) -> Path:
        if (name, split) not in written:
            dataset = load_dataset(name, shared_data / FOLDER.get(name, name), split, on_bad="skip")
            path = tmp_path_factory.mktemp("negatives") / f"{name}_{split}.jsonl"
            written[name, split] = write_negatives(path, generate_negatives(dataset))
        return written[name, split]

    return write


def test_every_dataset_recipe_is_covered() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in RECIPES}
    assert {"tan2d/charades_sta", "tan2d/tacos", "tan2d/activitynet_captions", "lgi/charades_sta"} <= names
    assert {"tan2d/charades_sta_sscs", "lgi/activitynet_captions_sscs"} <= names
    assert {"prvg/activitynet_captions", "prvg/tacos"} <= names
    for family in ("moment_detr", "qd_detr"):
        assert {
            f"{family}/{d}" for d in ("qvhighlights", "charades_sta", "charades_cg", "activitynet_cg")
        } <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_recipe_trains_and_its_checkpoint_predicts(
    recipe: Path, tmp_path: Path, shared_data: Path, negatives: Callable[[str, str], Path]
) -> None:
    raw = read_yaml(recipe)
    released = Config.from_dict(merge(raw, parse_overrides([f"data.root={shared_data}"])))
    name, key = released.data.dataset, released.data.feature_key
    assert key is not None and released.model["video_dim"] is not None
    split, videos = DATA[name]
    paragraphs = load_dataset(name, shared_data / FOLDER.get(name, name), split).paragraphs()[:videos]
    rng = np.random.default_rng(0)
    arrays = {p.video_id: rng.standard_normal((40, int(released.model["video_dim"]))) for p in paragraphs}
    if key.endswith((".npy", ".npz")):
        features = tmp_path / "features"
        features.mkdir()
        for vid, x in arrays.items():
            if key.endswith(".npy"):
                np.save(features / key.format(video_id=vid), x.astype(np.float32))
            else:  # Moment-DETR's layout: the clips under "features"
                np.savez(features / key.format(video_id=vid), features=x.astype(np.float32))
    else:
        features = tmp_path / "features.hdf5"
        write_hdf5_store(features, arrays, key=key)
    family = released.family.name
    overrides = [
        f"data.root={shared_data / FOLDER.get(name, name)}",
        f"data.features={features}",
        *(f"data.{s}_split={split}" for s in ("train", "test")),
        f"data.val_split={split if released.data.val_split else 'null'}",
        f"data.limit={videos}",
        "data.batch_size=4",
        "data.num_workers=0",
        *NARROW[family],
        *(SSCS_NARROW if released.model.get("sscs") is not None else []),
        *([f"data.negatives={negatives(name, split)}"] if released.model.get("shine") is not None else []),
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output_dir={tmp_path / 'runs'}",
    ]
    config = Config.from_dict(merge(raw, parse_overrides(overrides)))
    result = fit(config)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    assert checkpoint is not None and result.weights is not None

    run = open_checkpoint(checkpoint, device="cpu", limit=videos)
    records = run.records(split)
    sentences = [s.key for p in run.data.paragraphs(split) for s in p.sentences]
    assert [r.key for r in records] == sentences and sentences
    ranked = RANKED.get(family, 1)
    assert all(len(r.spans) == ranked for r in records)
    metrics = evaluate(records, run.data.annotations(split), inclusive=config.eval.inclusive)
    assert 0.0 <= metrics["mIoU"] <= 1.0
    if ranked > 1:
        assert any(k.startswith("R5@") for k in metrics)
    if name == "qvhighlights":  # the DETRs' clip saliency, scored by the highlight metrics
        assert 0.0 <= metrics["HL-min-VeryGood/mAP"] <= 1.0
