"""``higround evaluate``: score a predictions file against an annotation file.

``higround evaluate --predictions P --annotations A [--dataset NAME] [--thresholds 0.3 0.5 0.7]
[--exclusive] [--allow-missing] [--allow-unknown] [--on-bad error|skip] [--json OUT]`` reads P
(``higround.predictions.v1`` JSON or Moment-DETR JSON lines), matches it to A's sentences by key,
prints the metrics table of :mod:`higround.metrics` (percent; with the highlight metrics when the
predictions carry per-clip saliency and the annotations have highlight labels) and optionally
writes them (fractions) to a JSON file, atomically. With ``--on-bad skip`` A's bad records are left
out, and predictions for them are set aside and counted in a note (they have no trustworthy ground
truth to be scored against).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from higround.cli import retrieve_cmd
from higround.cli.options import fraction
from higround.cli.predict_cmd import add_checkpoint_data_arguments, open_from_args
from higround.data.readers import LayoutError, available_datasets, load_annotation_file
from higround.data.schema import GroundingDataset
from higround.errors import ConfigError, DataError
from higround.io import atomic_write_text, check_writable
from higround.metrics import (
    Predictions,
    align_predictions,
    check_thresholds,
    format_metrics,
    read_predictions,
    score_alignment,
    thresholds_for,
)

METRICS_FORMAT = "higround.metrics.v1"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of every command that scores sentences: thresholds, the hit rule, the JSON output."""
    parser.add_argument(
        "--thresholds", type=float, nargs="+", metavar="M", help="tIoU thresholds (default: the dataset's)"
    )
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument(
        "--exclusive",
        action="store_const",
        const=True,
        help="a hit needs IoU > m (2D-TAN's rule; default IoU >= m, or a checkpoint's eval.inclusive)",
    )
    rule.add_argument(
        "--inclusive", dest="exclusive", action="store_const", const=False, help="a hit needs IoU >= m"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file")


def exclusive_rule(args: argparse.Namespace, inclusive: bool = True) -> bool:
    """Whether a hit needs IoU > m: ``--exclusive``/``--inclusive`` when given, else not ``inclusive``."""
    return bool(args.exclusive) if args.exclusive is not None else not inclusive


def hit_rule(exclusive: bool) -> str:
    """The hit rule as printed and written: ``IoU > m`` or ``IoU >= m``."""
    return "IoU > m" if exclusive else "IoU >= m"


def register(sub: Any) -> None:
    """Add ``evaluate`` to the top-level sub-parsers."""
    parser = sub.add_parser("evaluate", help="score predictions against annotations")
    # Where predictions come from: exactly one source (a `--checkpoint` source can join this group).
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--predictions", metavar="FILE", help="higround.predictions.v1 .json or Moment-DETR .jsonl file"
    )
    source.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help="a trained checkpoint (.ckpt or .safetensors): predict, then score",
    )
    parser.add_argument("--split", help="split to predict and score (with --checkpoint), e.g. test")
    add_checkpoint_data_arguments(parser)
    parser.add_argument("--annotations", metavar="FILE", help="annotation file (with --predictions)")
    parser.add_argument(
        "--dataset",
        choices=available_datasets(),
        help="benchmark of --annotations (default: the predictions file's; .jsonl -> qvhighlights)",
    )
    parser.add_argument(
        "--predictions-format",
        choices=("auto", "higround", "moment_detr"),
        default="auto",
        help="format of --predictions (default: from its suffix and content)",
    )
    add_report_arguments(parser)
    parser.add_argument(
        "--allow-missing", action="store_true", help="score sentences without a prediction as misses"
    )
    parser.add_argument(
        "--allow-unknown", action="store_true", help="ignore predictions for keys not in the annotations"
    )
    parser.add_argument(
        "--nms-threshold", type=fraction, default=0.5, help="NMS IoU of the R5 columns (default %(default)s)"
    )
    parser.add_argument(
        "--rank-convention",
        choices=("higround", "hse"),
        default="higround",
        help="a retrieval checkpoint's numbers: higround's (R@1/5/10/50, median and mean rank) or "
        "HSE's (CMHSE evaluation.py: r10 is R@50, floored median); docs/retrieval.md",
    )
    parser.set_defaults(func=run)


def resolve_dataset(given: str | None, from_predictions: str | None, annotations: str) -> str:
    """The benchmark name: ``--dataset``, else the predictions file's, else ``.jsonl`` -> QVHighlights."""
    if given:
        return given
    if from_predictions in available_datasets():
        return str(from_predictions)
    if Path(annotations).suffix == ".jsonl":
        return "qvhighlights"
    raise ConfigError(
        f"cannot tell the benchmark of {annotations}: give --dataset ({', '.join(available_datasets())})"
    )


def print_report(metrics: Mapping[str, float], *, title: str, notes: Sequence[str] = ()) -> None:
    """Print a title line, notes (one line each) and the metrics table in percent."""
    print(title)
    for note in notes:
        print(f"note: {note}")
    print(format_metrics(metrics))


def write_metrics_json(path: str | Path, metrics: Mapping[str, float], info: Mapping[str, Any]) -> None:
    """Write ``info`` and the ``metrics`` (fractions) as one JSON object, atomically."""
    payload = {"format": METRICS_FORMAT, **info, "metrics": dict(metrics)}
    atomic_write_text(Path(path), json.dumps(payload, indent=2) + "\n")


def _keys(keys: Sequence[str], shown: int = 5) -> str:
    return ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")


def set_aside_skipped(predictions: Predictions, dataset: GroundingDataset) -> tuple[Predictions, list[str]]:
    """``predictions`` without those for the records the reader skipped, and the keys set aside.

    A prediction is set aside when its key is a skipped sentence's, or its video was skipped whole:
    it cannot be scored (the ground truth is bad), and it is not an unknown key either.
    """
    skipped = dataset.report.skipped
    keys = {r.key for r in skipped if r.key is not None}
    videos = {r.video_id for r in skipped if r.sentence_index is None}
    if not (keys or videos):
        return predictions, []
    aside = [r for r in predictions.records if r.key in keys or r.video_id in videos]
    kept = [r for r in predictions.records if not (r.key in keys or r.video_id in videos)]
    return dataclasses.replace(predictions, records=kept), [r.key for r in aside]


def run(args: argparse.Namespace) -> int:
    """Evaluate from the selected source of predictions."""
    if args.json:
        check_writable(args.json, "--json output")
    if args.checkpoint:
        return run_checkpoint(args)
    return run_predictions(args)


def run_checkpoint(args: argparse.Namespace) -> int:
    """``--checkpoint CKPT --split SPLIT``: predict the split with the model, score, print, write ``--json``.

    The predictions go through the same alignment and scoring as a predictions file; the data paths
    default to the checkpoint's recipe (``--annotations-root``, ``--features`` override them).
    """
    if not args.split:
        raise ConfigError("--split SPLIT is required with --checkpoint")
    if args.annotations:
        raise ConfigError("--annotations is for --predictions; with --checkpoint use --annotations-root DIR")
    split_run = open_from_args(args)
    from higround.models.family import RETRIEVAL  # torch is loaded by now

    if split_run.config.family.task == RETRIEVAL:
        return retrieve_cmd.run_evaluate(args, split_run)
    name = split_run.config.data.dataset
    if args.dataset and args.dataset != name:
        raise ConfigError(f"--dataset {args.dataset} but the checkpoint was trained on {name}")
    try:
        dataset = split_run.data.annotations(args.split)
    except LayoutError as err:
        # Another benchmark's file: the checkpoint fixes the benchmark, so the folder is what is wrong.
        raise DataError(
            f"{err.message}; the checkpoint was trained on {name}: give --annotations-root a folder of "
            f"{name} files"
        ) from None
    alignment = align_predictions(split_run.records(args.split), dataset)
    given = args.thresholds or split_run.config.eval.thresholds
    thresholds = check_thresholds(given) if given else thresholds_for(name)
    exclusive = exclusive_rule(args, split_run.config.eval.inclusive)
    metrics = score_alignment(
        alignment, thresholds=thresholds, inclusive=not exclusive, nms_threshold=args.nms_threshold
    )
    rule = hit_rule(exclusive)
    notes = [dataset.report.summary()] if dataset.report.clamped or dataset.report.skipped else []
    unknown = split_run.data.unknown_words(args.split)
    notes.append(f"split {args.split!r}: {unknown.describe()} (words outside the checkpoint's vocabulary)")
    print_report(
        metrics,
        title=(
            f"{name} {dataset.split}: {len(alignment)} sentences ({dataset.report.source})\n"
            f"checkpoint: {args.checkpoint} (device {split_run.device}); hit: {rule}; values in %"
        ),
        notes=notes,
    )
    if args.json:
        info = {
            "dataset": name,
            "split": dataset.split,
            "annotations": dataset.report.source,
            "checkpoint": str(args.checkpoint),
            "sentences": len(alignment),
            "unknown_words": {"unknown": unknown.unknown, "tokens": unknown.tokens, "rate": unknown.rate},
            "hit_rule": rule,
            "thresholds": list(thresholds),
        }
        write_metrics_json(args.json, metrics, info)
        print(f"wrote {args.json}")
    return 0


def run_predictions(args: argparse.Namespace) -> int:
    """``--predictions FILE --annotations FILE``: read both, score, print, write ``--json``."""
    if not args.annotations:
        raise ConfigError("--annotations FILE is required with --predictions")
    predictions = read_predictions(args.predictions, args.predictions_format)
    name = resolve_dataset(args.dataset, predictions.dataset, args.annotations)
    dataset = load_annotation_file(name, args.annotations, on_bad=args.on_bad or "error")
    predictions, set_aside = set_aside_skipped(predictions, dataset)
    alignment = align_predictions(
        predictions, dataset, allow_missing=args.allow_missing, allow_unknown=args.allow_unknown
    )
    thresholds = check_thresholds(args.thresholds) if args.thresholds else thresholds_for(name)
    metrics = score_alignment(
        alignment, thresholds=thresholds, inclusive=not exclusive_rule(args), nms_threshold=args.nms_threshold
    )
    notes = []
    if predictions.dataset not in (None, name):
        notes.append(f"the predictions file names dataset {predictions.dataset!r}; scored as {name!r}")
    if alignment.missing:
        notes.append(
            f"{len(alignment.missing)} sentence(s) without a prediction scored as misses (IoU 0): "
            f"{_keys(alignment.missing)}"
        )
    if alignment.unknown:
        notes.append(
            f"{len(alignment.unknown)} prediction(s) for keys not in the annotations ignored: "
            f"{_keys(alignment.unknown)}"
        )
    if dataset.report.clamped or dataset.report.skipped:
        notes.append(dataset.report.summary())
    if alignment.saliency is None and any(r.saliency is not None for r in predictions.records):
        notes.append(
            "the predictions' saliency scores are not scored: the annotations have no highlight labels"
        )
    if set_aside:
        notes.append(
            f"{len(set_aside)} prediction(s) for the skipped bad record(s) not scored (their ground truth "
            f"is bad): {_keys(set_aside)}"
        )
    rule = hit_rule(exclusive_rule(args))
    print_report(
        metrics,
        title=(
            f"{name} {dataset.split}: {len(alignment)} sentences ({args.annotations})\n"
            f"predictions: {args.predictions} ({predictions.format}); hit: {rule}; values in %"
        ),
        notes=notes,
    )
    if args.json:
        info = {
            "dataset": name,
            "split": dataset.split,
            "annotations": str(args.annotations),
            "predictions": str(args.predictions),
            "sentences": len(alignment),
            "missing": len(alignment.missing),
            "unknown": len(alignment.unknown),
            "skipped_records": len(dataset.report.skipped),
            "skipped_predictions": len(set_aside),
            "hit_rule": rule,
            "thresholds": list(thresholds),
        }
        write_metrics_json(args.json, metrics, info)
        print(f"wrote {args.json}")
    return 0
