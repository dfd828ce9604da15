"""``higround predict``: write a checkpoint's predictions for a split.

``higround predict --checkpoint CKPT --split test --out preds.json`` grounds every paragraph of the
split and writes the predictions file of :mod:`higround.metrics` (paragraph-, sentence- and
word-level spans in seconds), atomically. Data paths default to the checkpoint's recipe. ``--out``
is checked before anything is read; the split's unknown-word rate (words outside the checkpoint's
vocabulary) is printed with the summary, and a warning goes to stderr when it is high. With
``--on-bad skip`` the reader's note on the records it left out (and the ends it clamped) is printed
before the summary.
"""

from __future__ import annotations

import argparse
from typing import Any

from higround.cli.options import non_negative_int, positive_int
from higround.io import check_writable
from higround.metrics import write_predictions


def add_checkpoint_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that point a checkpoint's recipe at data (shared with ``evaluate --checkpoint``)."""
    parser.add_argument("--annotations-root", help="annotation folder (default: the checkpoint's data.root)")
    parser.add_argument("--features", help="feature store (default: the checkpoint's data.features)")
    parser.add_argument(
        "--feature-key",
        help="entry template in the store, e.g. '{video_id}/c3d_features'; 'auto': detect it from the "
        "store (default: the checkpoint's data.feature_key)",
    )
    parser.add_argument("--limit", type=positive_int, help="only the first N paragraphs of the split")
    parser.add_argument("--batch-size", type=positive_int, help="paragraphs per batch")
    parser.add_argument("--num-workers", type=non_negative_int, help="DataLoader workers")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--on-bad",
        choices=("error", "skip"),
        help="bad annotation records: stop at the first (error) or leave them out and report them (skip); "
        "default: the checkpoint's data.on_bad (evaluate --predictions: error)",
    )


def register(sub: Any) -> None:
    """Add ``predict`` to the top-level sub-parsers."""
    parser = sub.add_parser("predict", help="write a checkpoint's predictions for a split")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt or .safetensors (+ .json) file")
    parser.add_argument("--split", required=True, help="split name, e.g. test or val_2")
    parser.add_argument("--out", required=True, help="predictions file to write")
    add_checkpoint_data_arguments(parser)
    parser.set_defaults(func=run)


def open_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~higround.engine.evaluation.SplitRun` of ``--checkpoint`` and the data options."""
    # Imported here: the engine pulls in Lightning, which other sub-commands do not need.
    from higround.engine.evaluation import open_checkpoint

    return open_checkpoint(
        args.checkpoint,
        annotations_root=args.annotations_root,
        features=args.features,
        feature_key=args.feature_key,
        limit=args.limit,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        on_bad=args.on_bad,
    )


def run(args: argparse.Namespace) -> int:
    """Predict ``--split`` and write ``--out``."""
    check_writable(args.out, "--out")
    split_run = open_from_args(args)
    records = split_run.records(args.split)
    data = split_run.config.data
    split = split_run.data.annotations(args.split).split  # the file's split ("val_2" for "test")
    family = split_run.config.family.name
    meta = {"checkpoint": str(args.checkpoint), "model": family, "features": data.features}
    write_predictions(args.out, records, dataset=data.dataset, split=split, meta=meta)
    paragraphs = len({(r.video_id, r.paragraph_index) for r in records})
    report = split_run.data.annotations(args.split).report
    if report.clamped or report.skipped:
        print(f"note: {report.summary()}")
    unknown = split_run.data.unknown_words(args.split)
    print(
        f"wrote {args.out}: {len(records)} sentences in {paragraphs} paragraphs "
        f"({data.dataset} {args.split}); {unknown.describe()}"
    )
    return 0
