"""``higround demo``: learn grounding on the procedural benchmark, next to the prior floor, on a CPU.

:func:`run_demo` writes the procedural set (:mod:`higround.data.synthetic`; kept when its manifest
matches), trains the recipe's model family (HSCNet by default, ``configs/hscnet/synthetic.yaml``)
with the ordinary engine, predicts the test split, scores the final spans, the sentence- and
paragraph-level ones where the family has those levels, and the two text-blind priors
(:mod:`higround.baselines.prior`) with the one evaluator, and draws a timeline of a few test
paragraphs. Everything lands under one folder::

    out/data/            train/val/test.json, features.h5, synthetic.json
    out/train/           the training run (config.yaml, checkpoints/, csv/, model.safetensors)
    out/predictions/     <family>_test.json, prior_position-and-count_test.json, prior_position_test.json
    out/metrics.json     every row of the table (fractions), the commands' settings, timings
    out/table.md         the table as printed
    out/timeline.png     ground truth, final, sentence- and word-level spans per sentence

Design and measured figures: docs/demo.md.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from higround.baselines.prior import KeyedBy, PositionPrior
from higround.data.readers import load_dataset
from higround.data.schema import GroundingDataset, Span
from higround.data.synthetic import (
    MANIFEST_FORMAT,
    SyntheticConfig,
    SyntheticPaths,
    generate_dataset,
    vocabulary,
)
from higround.errors import ConfigError
from higround.io import atomic_write_text, check_writable
from higround.metrics import (
    PredictionRecord,
    evaluate,
    grounding_metrics,
    thresholds_for,
    write_predictions,
)
from higround.viz.timeline import TimelinePanel, TimelineRow, save_timeline

__all__ = [
    "DEFAULT_CONFIG",
    "DemoResult",
    "MetricsRow",
    "ensure_dataset",
    "format_table",
    "mean_std",
    "predict_levels",
    "prior_metrics",
    "run_demo",
    "split_overrides",
    "train_and_score",
]

DATASET = "activitynet_captions"  # the layout the generator writes
# The recipes beside the package in a source checkout (the README's command runs from one): a
# family's demo recipe is configs/<family>/synthetic.yaml.
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_MODEL = "hscnet"
DEFAULT_CONFIG = CONFIGS / DEFAULT_MODEL / "synthetic.yaml"
SYNTHETIC_PREFIX = "synthetic."
METRICS_FORMAT = "higround.demo.v1"


@dataclass(frozen=True)
class MetricsRow:
    """One row of the demo table: a predictor and its metrics (fractions) on the test split.

    Attributes:
        name: the row label.
        metrics: ``R1@m`` per threshold and ``mIoU``.
        target: what its spans are compared with (the sentences, or the paragraph's extent).
    """

    name: str
    metrics: dict[str, float]
    target: str = "sentence"


@dataclass(frozen=True)
class DemoResult:
    """What a demo run wrote and measured.

    Attributes:
        out_dir: the demo folder.
        data: the procedural set.
        run_dir: the training run folder.
        checkpoint: the checkpoint that was evaluated (best by val mIoU).
        rows: the table's rows, in print order.
        table: the table as printed.
        metrics_json, table_md, picture: written files.
        predictions: predictions file per row source (the family's name, e.g. ``hscnet``, and each prior).
        seconds: wall time per stage (``data``, ``train``, ``evaluate``, ``total``).
    """

    out_dir: Path
    data: SyntheticPaths
    run_dir: Path
    checkpoint: Path
    rows: list[MetricsRow]
    table: str
    metrics_json: Path
    table_md: Path
    picture: Path
    predictions: dict[str, Path]
    seconds: dict[str, float]


def split_overrides(overrides: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Separate ``synthetic.KEY=VALUE`` (generator knobs, values parsed as YAML) from recipe overrides.

    Raises:
        ConfigError: a ``synthetic.`` key that is not a :class:`SyntheticConfig` field.
    """
    from higround.engine.config import parse_overrides  # the engine pulls in torch

    known = {f.name for f in fields(SyntheticConfig)}
    knobs: dict[str, Any] = {}
    recipe: list[str] = []
    for item in overrides:
        if not item.startswith(SYNTHETIC_PREFIX):
            recipe.append(item)
            continue
        key, sep, _ = item[len(SYNTHETIC_PREFIX) :].partition("=")
        if not sep or key not in known:
            names = ", ".join(sorted(known))
            raise ConfigError(f"demo: override {item!r} is not synthetic.KEY=VALUE with KEY one of {names}")
        # Values are read as recipe overrides are (YAML, or the text itself when it is not YAML).
        knobs[key] = parse_overrides([item])["synthetic"][key]
    return knobs, recipe


def demo_recipe(model: str | None, config_path: str | Path | None) -> Path:
    """The recipe a demo trains: ``config_path`` when given, else ``configs/<model>/synthetic.yaml``
    (``model`` default ``hscnet``).

    Raises:
        ConfigError: ``model`` is not a family of the table (naming the known ones), or the recipe
            file is missing (the recipes live in a source checkout, not in the wheel).
    """
    from higround.models.registry import get_family  # the models pull in torch

    if model is not None:
        get_family(model, where="demo --model")
    if config_path is not None:
        return Path(config_path)
    recipe = CONFIGS / (model or DEFAULT_MODEL) / "synthetic.yaml"
    if not recipe.is_file():
        raise ConfigError(
            f"demo: recipe {recipe} not found; run from a checkout of higround or pass --config FILE"
        )
    return recipe


def mean_std(values: Sequence[float]) -> str:
    """Fractions as ``mean ± std`` in percent (sample std; ``± n/a`` for one value): how the seed
    spreads of the demo and the ablations are printed."""
    mean = 100 * statistics.fmean(values)
    std = f"{100 * statistics.stdev(values):.2f}" if len(values) > 1 else "n/a"
    return f"{mean:.2f} ± {std}"


def prior_metrics(data: SyntheticPaths) -> dict[str, float]:
    """The text-blind prior (i, n) fitted on the procedural set's train split, scored on its test split."""
    train = load_dataset(DATASET, data.root, "train")
    test = load_dataset(DATASET, data.root, "test")
    records, _ = PositionPrior.fit(train).predict(test)
    return evaluate(records, test, thresholds_for(DATASET))


def train_and_score(recipe: str | Path, overrides: Sequence[str]) -> tuple[dict[str, float], float | None]:
    """Train ``recipe`` with ``overrides`` (a procedural-set recipe) and score its best checkpoint's
    final spans on the test split; returns the metrics (fractions) and the best val mIoU."""
    from higround.engine.config import load_config  # the engine pulls in torch and Lightning
    from higround.engine.trainer import fit

    config = load_config(recipe, overrides)
    result = fit(config)
    if result.best_checkpoint is None:
        raise ConfigError("training wrote no checkpoint")
    final, _, test = predict_levels(result.best_checkpoint, config.data.test_split)
    return evaluate(final, test, thresholds_for(DATASET)), result.best_score


def ensure_dataset(root: Path, config: SyntheticConfig) -> tuple[SyntheticPaths, bool]:
    """The procedural set of ``config`` under ``root``: reused when its manifest records the same
    config and every file is there, else (re)generated. Returns the paths and whether it was written."""
    manifest = root / "synthetic.json"
    names = {"train": "train.json", "val": "val.json", "test": "test.json"}
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            recorded = {}
        if not isinstance(recorded, dict):  # a damaged manifest: the set is written again
            recorded = {}
        # Through JSON both sides: the manifest stores ranges as lists.
        same = recorded.get("format") == MANIFEST_FORMAT and recorded.get("config") == json.loads(
            json.dumps(asdict(config))
        )
        if same and all((root / n).is_file() for n in [*names.values(), "features.h5"]):
            annotations = {s: root / n for s, n in names.items()}
            return SyntheticPaths(root, root / "features.h5", manifest, annotations), False
    return generate_dataset(root, config), True


def format_table(rows: Sequence[MetricsRow], thresholds: Sequence[float]) -> str:
    """A markdown table: one line per row, columns ``R1@m`` (percent) and ``mIoU``."""
    columns = [f"R1@{t:g}" for t in thresholds] + ["mIoU"]
    width = max(len(r.name) for r in rows)
    lines = [
        f"| {'method'.ljust(width)} | " + " | ".join(f"{c:>7}" for c in columns) + " |",
        f"|{'-' * (width + 2)}|" + "|".join("-" * 8 + ":" for _ in columns) + "|",
    ]
    for row in rows:
        cells = " | ".join(f"{100 * row.metrics[c]:7.2f}" for c in columns)
        lines.append(f"| {row.name.ljust(width)} | {cells} |")
    return "\n".join(lines)


def _fresh_run_dir(directory: Path) -> None:
    """Remove a previous demo training run (a folder the engine wrote: it has config.yaml)."""
    if not directory.exists():
        return
    if not (directory / "config.yaml").is_file():
        raise ConfigError(f"demo: {directory} exists and is not a training run folder; choose another --out")
    shutil.rmtree(directory)


def _paragraph_extent_metrics(
    records: Sequence[PredictionRecord], dataset: GroundingDataset, thresholds: Sequence[float]
) -> dict[str, float]:
    """The paragraph decoder's span against each paragraph's extent: the hull of its sentence spans,
    the decoder's training target."""
    predicted = {(r.video_id, r.paragraph_index): r.paragraph_span for r in records}
    paragraphs = dataset.paragraphs()
    gt = np.array([p.union_span for p in paragraphs], dtype=np.float64)
    pred = np.array([predicted[(p.video_id, p.index)] for p in paragraphs], dtype=np.float64)
    return grounding_metrics(pred, gt, thresholds)


def predict_levels(
    checkpoint: str | Path, split: str
) -> tuple[list[PredictionRecord], list[PredictionRecord], GroundingDataset]:
    """A checkpoint's records on ``split`` (its recipe's data, on the CPU): the final spans, the
    sentence-level spans in their place (empty when the model has no such level), and the split's
    annotations as the model read them."""
    from higround.engine.evaluation import open_checkpoint

    run = open_checkpoint(checkpoint, device="cpu")
    final = run.records(split)
    has_level = bool(final) and final[0].sentence_span is not None
    sentence_level = [replace(r, spans=(cast(Span, r.sentence_span),)) for r in final] if has_level else []
    return final, sentence_level, run.data.annotations(split)


def _timeline_panels(
    dataset: GroundingDataset,
    final: Sequence[PredictionRecord],
    sentence_level: Sequence[PredictionRecord],
    visual_words: set[str],
    count: int,
) -> list[TimelinePanel]:
    """One panel per paragraph of the first ``count``: per sentence its ground truth, final and
    sentence-level spans, and the word decoder's span of each word that names something visible."""
    from higround.text.tokenizer import tokenize

    by_key = {r.key: r for r in final}
    sentence_by_key = {r.key: r for r in sentence_level}
    panels = []
    for paragraph in dataset.paragraphs()[:count]:
        rows: list[TimelineRow] = []
        span = by_key[paragraph.sentences[0].key].paragraph_span
        if span is not None:
            rows.append(TimelineRow("paragraph", [span], "paragraph"))
        for i, sentence in enumerate(paragraph.sentences, start=1):
            record = by_key[sentence.key]
            rows += [
                TimelineRow(f"S{i} gt", [sentence.span], "gt", sentence.text),
                TimelineRow(f"S{i} final", [record.spans[0]], "final"),
            ]
            if sentence.key in sentence_by_key:
                rows.append(
                    TimelineRow(f"S{i} sentence", [sentence_by_key[sentence.key].spans[0]], "sentence")
                )
            words = tokenize(sentence.text)
            if record.word_spans is not None and len(record.word_spans) == len(words):
                rows += [
                    TimelineRow(f"S{i} word", [w_span], "word", word)
                    for word, w_span in zip(words, record.word_spans, strict=True)
                    if word in visual_words
                ]
        panels.append(TimelinePanel(f"{paragraph.video_id} (test)", paragraph.duration, rows))
    return panels


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    seed: int = 0,
    overrides: Sequence[str] = (),
    config_path: str | Path | None = None,
    model: str | None = None,
    paragraphs: int = 3,
    progress_bar: bool = True,
) -> DemoResult:
    """Generate, train, evaluate, compare with the priors, draw; see the module docstring.

    Args:
        out_dir: the demo folder (a previous demo's training run in it is replaced).
        seed: seeds the procedural set and the training run.
        overrides: recipe ``key=value`` overrides, and ``synthetic.KEY=VALUE`` generator knobs.
        config_path: the recipe (default ``configs/<model>/synthetic.yaml``).
        model: the model family to train (default ``hscnet``); with ``config_path``, the recipe must
            name it.
        paragraphs: test paragraphs drawn in the timeline.
        progress_bar: show Lightning's progress bar while training.

    Raises:
        ConfigError: a bad override, a missing or bad recipe (the default lives in a source checkout),
            ``paragraphs`` < 1, or an ``out_dir/train`` that is not a run folder.
        OutputError: ``out_dir`` is a file or cannot be written (checked before any work).
    """
    # Imported here: the engine pulls in torch and Lightning.
    from higround.engine.config import load_config
    from higround.engine.datamodule import GroundingDataModule
    from higround.engine.trainer import fit

    if paragraphs < 1:
        raise ConfigError(f"demo: paragraphs must be >= 1 (panels in the picture), got {paragraphs}")
    recipe = demo_recipe(model, config_path)
    if not recipe.is_file():
        # The recipes live in the repository's configs/, not in the wheel: fail before writing data.
        raise ConfigError(
            f"demo: recipe {recipe} not found; run from a checkout of higround or pass --config FILE"
        )
    started = time.perf_counter()
    knobs, recipe_overrides = split_overrides(overrides)
    synthetic = SyntheticConfig(**{"seed": seed, **knobs})
    # A bad recipe or override fails here, before any data is written.
    checked = load_config(recipe, recipe_overrides)
    checked.family.check_task("the demo")  # it scores spans (a retrieval recipe: higround evaluate)
    if checked.data.dataset != DATASET:
        raise ConfigError(f"demo: the recipe must read data.dataset={DATASET}, not {checked.data.dataset}")
    if model is not None and checked.family.name != model:
        raise ConfigError(
            f"demo: --model {model} but the recipe {recipe} trains model.family={checked.family.name}"
        )
    out = check_writable(out_dir, "demo --out", directory=True)
    data, _ = ensure_dataset(out / "data", synthetic)
    seconds = {"data": time.perf_counter() - started}

    config = load_config(
        recipe,
        [
            f"seed={seed}",
            f"output_dir={out}",
            "name=train",
            f"data.root={data.root}",
            f"data.features={data.features}",
            f"trainer.progress_bar={str(progress_bar).lower()}",
            *recipe_overrides,
        ],
    )
    _fresh_run_dir(out / "train")
    tick = time.perf_counter()
    result = fit(config)
    seconds["train"] = time.perf_counter() - tick
    if result.best_checkpoint is None:
        raise ConfigError("demo: training wrote no checkpoint")

    tick = time.perf_counter()
    split = config.data.test_split
    final, sentence_level, test = predict_levels(result.best_checkpoint, split)
    thresholds = config.eval.thresholds or thresholds_for(DATASET)
    # The training split as training read it (the recipe's on_bad, max_sentences and limit).
    train = GroundingDataModule(config).annotations(config.data.train_split)

    predictions_dir = out / "predictions"
    family = config.family
    predictions = {family.name: predictions_dir / f"{family.name}_{split}.json"}
    meta = {"checkpoint": str(result.best_checkpoint), "model": family.name, "features": str(data.features)}
    write_predictions(predictions[family.name], final, dataset=DATASET, split=test.split, meta=meta)
    rows_out: list[MetricsRow] = []
    fitted = PositionPrior.fit(train)  # fits both tables; keyed_by only picks one when predicting
    variants: tuple[tuple[KeyedBy, str], ...] = (
        ("position-and-count", "prior (i, n)"),
        ("position", "prior (i)"),
    )
    for keyed_by, label in variants:
        prior = replace(fitted, keyed_by=keyed_by)
        records, _ = prior.predict(test)
        path = predictions_dir / f"prior_{keyed_by}_{split}.json"
        write_predictions(path, records, dataset=DATASET, split=test.split, meta=prior.describe())
        predictions[f"prior {keyed_by}"] = path
        rows_out.append(MetricsRow(label, evaluate(records, test, thresholds)))
    levels = bool(sentence_level) or (bool(final) and final[0].paragraph_span is not None)
    # "final" tells the answer from the other levels; a one-level model's row is just its name.
    label = f"{family.title} final" if levels else family.title
    rows_out.append(MetricsRow(label, evaluate(final, test, thresholds)))
    if sentence_level:
        rows_out.append(
            MetricsRow(f"{family.title} sentence-level", evaluate(sentence_level, test, thresholds))
        )
    if final and final[0].paragraph_span is not None:
        rows_out.append(
            MetricsRow(
                f"{family.title} paragraph-level*",
                _paragraph_extent_metrics(final, test, thresholds),
                target="paragraph extent",
            )
        )
    table = format_table(rows_out, thresholds)
    seconds["evaluate"] = time.perf_counter() - tick

    vocab = vocabulary(synthetic)
    visual = {*vocab.verbs, *vocab.objects}
    picture = save_timeline(
        _timeline_panels(test, final, sentence_level, visual, paragraphs), out / "timeline.png"
    )
    seconds["total"] = time.perf_counter() - started

    metrics_json = out / "metrics.json"
    payload: dict[str, Any] = {
        "format": METRICS_FORMAT,
        "dataset": DATASET,
        "split": split,
        "sentences": len(final),
        "paragraphs": len(test.paragraphs()),
        "thresholds": list(thresholds),
        "synthetic": json.loads(json.dumps(asdict(synthetic))),
        "recipe": str(recipe),
        "model": family.name,
        "unit": config.data.unit or family.unit,
        "overrides": list(overrides),
        "checkpoint": str(result.best_checkpoint),
        "best_val_mIoU": result.best_score,
        "seconds": seconds,
        "rows": [asdict(r) for r in rows_out],
    }
    atomic_write_text(metrics_json, json.dumps(payload, indent=2) + "\n")
    table_md = out / "table.md"
    atomic_write_text(table_md, table + "\n")
    return DemoResult(
        out,
        data,
        result.run_dir,
        result.best_checkpoint,
        rows_out,
        table,
        metrics_json,
        table_md,
        picture,
        predictions,
        seconds,
    )
