"""``higround data``: inspect annotation files.

``higround data stats DATASET --root DIR --split SPLIT`` (or ``--file FILE``) loads one split with
the shared readers and prints its counts and the reader's report; ``higround data list`` names the
benchmarks and their splits; ``higround data negatives DATASET --root DIR --split train --out FILE``
writes SHINE-style hierarchical negatives of a split (docs/shine.md).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from higround.data.negatives import (
    DEFAULT_RATIOS,
    check_ratios,
    generate_negatives,
    manifest_word_classes,
    masked_fractions,
    write_negatives,
)
from higround.data.readers import (
    DATASETS,
    DEFAULT_CLAMP_TOLERANCE,
    available_datasets,
    load_annotation_file,
    load_dataset,
)
from higround.data.schema import GroundingDataset
from higround.errors import ConfigError
from higround.io import check_writable


def register(sub: Any) -> None:
    """Add ``data`` with its ``stats`` and ``list`` actions to the top-level sub-parsers."""
    parser = sub.add_parser("data", help="inspect benchmark annotation files")
    actions = parser.add_subparsers(dest="data_command", required=True)

    stats = actions.add_parser("stats", help="counts of one split and the reader's report")
    stats.add_argument("dataset", choices=available_datasets())
    stats.add_argument("--root", help="the benchmark's folder, or a data root holding it")
    stats.add_argument("--split", help="split name, e.g. val_2 (see `higround data list`)")
    stats.add_argument("--file", help="read this annotation file instead of --root/--split")
    stats.add_argument("--on-bad", choices=("error", "skip"), default="error", help="bad-record policy")
    stats.add_argument("--max-sentences", type=int, help="split paragraphs into chunks of at most K")
    stats.add_argument(
        "--clamp-tolerance",
        type=float,
        default=DEFAULT_CLAMP_TOLERANCE,
        help="seconds an end may pass the duration and be clamped (default %(default)s)",
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(func=run)

    listing = actions.add_parser("list", help="benchmarks and their splits")
    listing.set_defaults(func=run)

    negatives = actions.add_parser(
        "negatives", help="write SHINE hierarchical negatives (progressive masking and refill) of a split"
    )
    negatives.add_argument("dataset", choices=available_datasets())
    negatives.add_argument("--root", required=True, help="the benchmark's folder, or a data root holding it")
    negatives.add_argument("--split", default="train", help="split to mask (default %(default)s)")
    negatives.add_argument("--out", required=True, help="the .jsonl file to write")
    negatives.add_argument("--seed", type=int, default=0, help="seed of the refills (default %(default)s)")
    negatives.add_argument(
        "--ratios",
        type=float,
        nargs="+",
        default=list(DEFAULT_RATIOS),
        metavar="R",
        help="masking ratio of each level (default %(default)s: SHINE supp. Table 1)",
    )
    negatives.add_argument(
        "--grammar",
        help="the procedural benchmark's synthetic.json: exact word classes from its grammar "
        "(default: a lexicon built from the split's captions)",
    )
    negatives.add_argument("--on-bad", choices=("error", "skip"), default="error", help="bad-record policy")
    negatives.set_defaults(func=run_negatives)


def compute_stats(dataset: GroundingDataset) -> dict[str, Any]:
    """Counts and means of a loaded split (NaN-free: empty sets give 0)."""
    paragraphs = dataset.paragraphs()
    per_paragraph = np.array([len(p) for p in paragraphs], dtype=np.int64)
    durations = np.array([v.duration for v in dataset.videos], dtype=np.float64)
    spans = np.array([s.span for _, s in dataset.sentences()], dtype=np.float64).reshape(-1, 2)
    return {
        "dataset": dataset.name,
        "split": dataset.split,
        "file": dataset.report.source,
        "videos": len(dataset.videos),
        "paragraphs": len(paragraphs),
        "sentences": int(per_paragraph.sum()),
        "sentences_per_paragraph_mean": float(per_paragraph.mean()) if len(paragraphs) else 0.0,
        "sentences_per_paragraph_max": int(per_paragraph.max(initial=0)),
        "mean_video_duration_s": float(durations.mean()) if len(durations) else 0.0,
        "mean_moment_length_s": float((spans[:, 1] - spans[:, 0]).mean()) if len(spans) else 0.0,
        "clamped": dataset.report.clamped,
        "skipped": [asdict(r) for r in dataset.report.skipped],
        "report": dataset.report.summary(),
    }


def format_stats(stats: dict[str, Any]) -> str:
    """The human-readable table printed by ``higround data stats``."""
    rows = [
        ("videos", f"{stats['videos']}"),
        ("paragraphs", f"{stats['paragraphs']}"),
        ("sentences", f"{stats['sentences']}"),
        (
            "sentences per paragraph",
            f"mean {stats['sentences_per_paragraph_mean']:.2f}, max {stats['sentences_per_paragraph_max']}",
        ),
        ("mean video duration (s)", f"{stats['mean_video_duration_s']:.2f}"),
        ("mean moment length (s)", f"{stats['mean_moment_length_s']:.2f}"),
    ]
    lines = [f"{stats['dataset']} {stats['split']} ({stats['file']})"]
    lines += [f"  {label:<25}{value}" for label, value in rows]
    lines.append(f"  report: {stats['report']}")
    return "\n".join(lines)


def _load(args: argparse.Namespace) -> GroundingDataset:
    options = {
        "on_bad": args.on_bad,
        "max_sentences": args.max_sentences,
        "clamp_tolerance": args.clamp_tolerance,
    }
    if args.file:
        if args.root or args.split:
            raise ConfigError("give either --file or --root with --split, not both")
        if Path(args.file).is_dir():
            raise ConfigError(
                f"--file {args.file} is a folder: give one annotation file, or the folder as --root DIR "
                "with --split SPLIT"
            )
        return load_annotation_file(args.dataset, args.file, **options)
    if not (args.root and args.split):
        raise ConfigError("need --root and --split (or --file)")
    return load_dataset(args.dataset, args.root, args.split, **options)


def run(args: argparse.Namespace) -> int:
    """Run ``higround data stats`` or ``higround data list``."""
    if args.data_command == "list":
        splits = {name: ", ".join(DATASETS[name].splits) for name in available_datasets()}
        width = max(map(len, splits.values())) + 2
        for name, names in splits.items():
            print(f"{name:<22}{names:<{width}}{DATASETS[name].description}")
        return 0
    stats = compute_stats(_load(args))
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def run_negatives(args: argparse.Namespace) -> int:
    """Run ``higround data negatives``: mask and refill every query of a split, write the jsonl."""
    out = check_writable(args.out, "--out")
    ratios = check_ratios(args.ratios)
    word_classes = manifest_word_classes(args.grammar) if args.grammar else None
    dataset = load_dataset(args.dataset, args.root, args.split, on_bad=args.on_bad)
    rows = generate_negatives(dataset, ratios=ratios, seed=args.seed, word_classes=word_classes)
    write_negatives(out, rows)
    fractions = ", ".join(f"{f:.2f}" for f in masked_fractions(rows))
    print(
        f"wrote {out}: {len(rows)} queries x {len(ratios)} levels; mean masked fraction per level {fractions}"
    )
    print(f"  report: {dataset.report.summary()}")
    return 0
