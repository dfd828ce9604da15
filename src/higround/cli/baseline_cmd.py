"""``higround baseline``: reference baselines, scored with the one evaluator.

``higround baseline prior --dataset NAME --root DIR --train-split S --eval-split S2
[--keyed-by position-and-count|position] [--out preds.json] [--on-bad error|skip]
[--max-sentences K] [--thresholds M ...] [--exclusive] [--json OUT]`` fits the text-blind position
prior (:mod:`higround.baselines.prior`) on split S, predicts every sentence of S2, optionally writes
the predictions file, and prints the metrics table of :mod:`higround.metrics` (the dataset's
thresholds unless given) with the readers' reports, so no skipped record goes unmentioned.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from higround.baselines.prior import FALLBACK_LEVELS, KEYED_BY, PositionPrior
from higround.cli.evaluate_cmd import (
    add_report_arguments,
    exclusive_rule,
    hit_rule,
    print_report,
    write_metrics_json,
)
from higround.data.readers import available_datasets, load_dataset
from higround.data.schema import GroundingDataset
from higround.io import check_writable
from higround.metrics import check_thresholds, evaluate, thresholds_for, write_predictions


def register(sub: Any) -> None:
    """Add ``baseline`` with its ``prior`` action to the top-level sub-parsers."""
    parser = sub.add_parser("baseline", help="reference baselines (the floor learned models beat)")
    kinds = parser.add_subparsers(dest="baseline", required=True)
    prior = kinds.add_parser(
        "prior",
        help="text-blind prior: the mean span of the i-th of n sentences in training",
        description="Predict each sentence's span from its position alone, fitted on a training split.",
    )
    prior.add_argument("--dataset", required=True, choices=available_datasets(), help="benchmark reader")
    prior.add_argument("--root", required=True, help="the benchmark's folder, or a data root holding it")
    prior.add_argument("--train-split", required=True, help="split the prior is fitted on")
    prior.add_argument("--eval-split", required=True, help="split it is scored on")
    prior.add_argument(
        "--keyed-by",
        choices=KEYED_BY,
        default="position-and-count",
        help="(i, n) with fallback to i, then the global mean; or i only (default %(default)s)",
    )
    prior.add_argument("--out", metavar="FILE", help="write the predictions (higround.predictions.v1)")
    prior.add_argument(
        "--on-bad",
        choices=("error", "skip"),
        default="error",
        help="bad-record policy of both splits (ActivityNet train needs skip)",
    )
    prior.add_argument("--max-sentences", type=int, help="split paragraphs into chunks of at most K")
    add_report_arguments(prior)
    prior.set_defaults(func=run)


def _load(args: argparse.Namespace, split: str) -> GroundingDataset:
    return load_dataset(args.dataset, args.root, split, on_bad=args.on_bad, max_sentences=args.max_sentences)


def run(args: argparse.Namespace) -> int:
    """Fit, predict, write and score the prior."""
    # Checked before the splits are read: a run should not end on an unwritable output.
    if args.out:
        check_writable(args.out, "--out predictions")
    if args.json:
        check_writable(args.json, "--json output")
    train, test = _load(args, args.train_split), _load(args, args.eval_split)
    prior = PositionPrior.fit(train, args.keyed_by)
    records, level = prior.predict(test)
    used = dict(
        zip(FALLBACK_LEVELS, np.bincount(level, minlength=len(FALLBACK_LEVELS)).tolist(), strict=True)
    )
    thresholds = check_thresholds(args.thresholds) if args.thresholds else thresholds_for(args.dataset)
    metrics = evaluate(records, test, thresholds, inclusive=not exclusive_rule(args))
    meta = {"baseline": "prior", **prior.describe(), "keyed": used}
    if args.out:
        write_predictions(args.out, records, dataset=args.dataset, split=test.split, meta=meta)
    notes = [d.report.summary() for d in (train, test) if d.report.clamped or d.report.skipped]
    notes.append("predictions keyed by " + ", ".join(f"{k}: {v}" for k, v in used.items()))
    rule = hit_rule(exclusive_rule(args))
    print_report(
        metrics,
        title=(
            f"prior baseline ({args.keyed_by}) {args.dataset}: fitted on {train.split} "
            f"({len(train.paragraphs())} paragraphs), scored on {test.split} ({len(records)} sentences)\n"
            f"hit: {rule}; values in %"
        ),
        notes=notes,
    )
    if args.out:
        print(f"wrote {args.out}")
    if args.json:
        info = {
            "dataset": args.dataset,
            "split": test.split,
            "annotations": test.report.source,
            "sentences": len(records),
            "hit_rule": rule,
            "thresholds": list(thresholds),
            **meta,
        }
        write_metrics_json(args.json, metrics, info)
        print(f"wrote {args.json}")
    return 0
