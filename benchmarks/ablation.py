"""HSCNet ablations (Tables 2-4 of Tan et al., CVPR 2023) rerun on the procedural benchmark.

Trains ``configs/hscnet/synthetic.yaml`` with a shorter recipe (``RECIPE`` below) once per
(variant, seed) through the ordinary engine, scores the best-by-val checkpoint's final spans on the
test split with the one evaluator, and writes:

* ``<results>/ablation.json``: every run's metrics (fractions), seconds and settings, rewritten after
  each run so an interrupted run keeps what it finished (rerunning skips runs already there);
* ``<results>/ablation.md``: per table, mean ± std over seeds of R1@0.3/0.5/0.7 and mIoU (percent),
  the prior baseline's row for reference, the command and the total wall time.

Tables: 2 levels (SL, SL+PL, SL+WL, SL+PL+WL: ``model.word_level`` / ``model.paragraph_level`` off
in encoder and decoder), 3 encoder alignment losses (none, each alone, all: ``model.align_*``),
4 decoders (SD, SD+PD, SD+WD, all: ``model.paragraph_decoder`` / ``model.word_decoder``), and, not
the paper's, the speed settings of docs/benchmarks.md (``trainer.precision=bf16-mixed``,
``model.attention_dropout=0``). The full model is one run set shared by the tables. Run from the
repository root, one thread::

    OMP_NUM_THREADS=1 python benchmarks/ablation.py --seeds 0 1 2
    python benchmarks/ablation.py --quick          # 1 seed, tiny data and 1 epoch: a smoke check
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from higround.data.synthetic import SyntheticConfig
from higround.demo import DEFAULT_CONFIG, ensure_dataset, mean_std, prior_metrics, train_and_score
from higround.io import atomic_write_text

FORMAT = "higround.ablation.v1"
COLUMNS = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")
FULL = "SL+PL+WL"


@dataclass(frozen=True)
class Variant:
    """One ablation row: its name, the tables it appears in, and its model overrides."""

    name: str
    tables: tuple[str, ...]
    overrides: tuple[str, ...] = ()


VARIANTS = (
    Variant(FULL, ("2", "3", "4", "5")),
    Variant("SL", ("2",), ("model.word_level=false", "model.paragraph_level=false")),
    Variant("SL+PL", ("2",), ("model.word_level=false",)),
    Variant("SL+WL", ("2",), ("model.paragraph_level=false",)),
    Variant(
        "no alignment loss",
        ("3",),
        ("model.align_word=false", "model.align_sentence=false", "model.align_paragraph=false"),
    ),
    Variant("L_enc^P only", ("3",), ("model.align_word=false", "model.align_sentence=false")),
    Variant("L_enc^S only", ("3",), ("model.align_word=false", "model.align_paragraph=false")),
    Variant("L_enc^W only", ("3",), ("model.align_sentence=false", "model.align_paragraph=false")),
    Variant("SD", ("4",), ("model.paragraph_decoder=false", "model.word_decoder=false")),
    Variant("SD+PD", ("4",), ("model.word_decoder=false",)),
    Variant("SD+WD", ("4",), ("model.paragraph_decoder=false",)),
    # Not the paper's: the speed settings of docs/benchmarks.md, kept only if accuracy holds.
    Variant("attention dropout 0", ("5",), ("model.attention_dropout=0",)),
    Variant("bf16-mixed", ("5",), ("trainer.precision=bf16-mixed",)),
    Variant(
        "bf16-mixed, attention dropout 0",
        ("5",),
        ("trainer.precision=bf16-mixed", "model.attention_dropout=0"),
    ),
)
# How the full model is named in each table (the paper's row labels).
FULL_LABEL = {
    "2": "SL+PL+WL",
    "3": "all three",
    "4": "SD+PD+WD",
    "5": "fp32, attention dropout = dropout (default)",
}
TITLES = {
    "2": "Table 2: semantic levels (encoder and decoder)",
    "3": "Table 3: encoder alignment losses",
    "4": "Table 4: decoder levels",
    "5": "Speed settings (not in the paper): training precision and attention dropout",
}

# The ablation recipe: the demo's model and data with a shorter schedule (see docs/ablation.md).
RECIPE = ("trainer.max_epochs=8",)
DATA = SyntheticConfig(seed=0, train_videos=300, val_videos=50)
QUICK_RECIPE = ("trainer.max_epochs=1", "model.hidden_dim=32", "model.num_heads=2")
QUICK_DATA = SyntheticConfig(seed=0, train_videos=24, val_videos=6, test_videos=6)


def _run(variant: Variant, seed: int, root: Path, out: Path, recipe: Sequence[str]) -> dict[str, Any]:
    """Train and score one (variant, seed); returns its JSON record."""
    name = f"{variant.name.replace(' ', '_').replace('^', '')}_seed{seed}"
    started = time.perf_counter()
    metrics, best_val = train_and_score(
        DEFAULT_CONFIG,
        [
            f"seed={seed}",
            f"output_dir={out / 'runs'}",
            f"name={name}",
            f"data.root={root}",
            f"data.features={root / 'features.h5'}",
            "trainer.progress_bar=false",
            *recipe,
            *variant.overrides,
        ],
    )
    return {
        "variant": variant.name,
        "seed": seed,
        "overrides": list(variant.overrides),
        "metrics": metrics,
        "best_val_mIoU": best_val,
        "seconds": time.perf_counter() - started,
    }


def markdown(runs: Sequence[dict[str, Any]], prior: dict[str, float], header: str) -> str:
    """The paper's three tables (rows in its order) and the speed settings, the prior's row under each."""
    lines = [header, ""]
    for table in TITLES:
        lines += [f"### {TITLES[table]}", ""]
        lines.append("| variant | seeds | " + " | ".join(COLUMNS) + " |")
        lines.append("|---|---:|" + "---:|" * len(COLUMNS))
        for variant in (v for v in VARIANTS[1:] + VARIANTS[:1] if table in v.tables):
            done = [r for r in runs if r["variant"] == variant.name]
            if not done:
                continue
            label = FULL_LABEL[table] if variant.name == FULL else variant.name
            cells = [mean_std([r["metrics"][c] for r in done]) for c in COLUMNS]
            lines.append(f"| {label} | {len(done)} | " + " | ".join(cells) + " |")
        prior_cells = [f"{100 * prior[c]:.2f}" for c in COLUMNS]
        lines.append("| prior (i, n), text-blind | - | " + " | ".join(prior_cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every (variant, seed) not yet in the results file; write JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--out", default="runs/ablation", help="data and run folders (default %(default)s)")
    parser.add_argument("--results", default="benchmarks/results", help="where ablation.json/.md go")
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny data, 1 epoch (a smoke check)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # 33 runs of Lightning's start-up banners would bury the per-run lines.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    seeds = args.seeds[:1] if args.quick else args.seeds
    recipe, data_config = (QUICK_RECIPE, QUICK_DATA) if args.quick else (RECIPE, DATA)
    out = Path(args.out) / ("quick" if args.quick else "full")
    results = Path(args.results)
    stem = "ablation_quick" if args.quick else "ablation"
    json_path, md_path = results / f"{stem}.json", results / f"{stem}.md"
    command = "OMP_NUM_THREADS=1 python " + shlex.join(["benchmarks/ablation.py", *sys.argv[1:]])

    started = time.perf_counter()
    data, _ = ensure_dataset(out / "data", data_config)
    prior = prior_metrics(data)

    data_record = json.loads(json.dumps(asdict(data_config)))  # as it reads back from the JSON file
    previous = json.loads(json_path.read_text()) if json_path.is_file() else {}
    same_setup = previous.get("recipe") == list(recipe) and previous.get("data") == data_record
    runs: list[dict[str, Any]] = previous.get("runs", []) if same_setup else []
    elapsed_before = float(previous.get("wall_seconds", 0.0)) if same_setup else 0.0

    def write() -> float:
        wall = elapsed_before + time.perf_counter() - started
        payload = {
            "format": FORMAT,
            "command": command,
            "recipe": list(recipe),
            "data": data_record,
            "threads": args.threads,
            "wall_seconds": wall,
            "prior": prior,
            "runs": runs,
        }
        atomic_write_text(json_path, json.dumps(payload, indent=1) + "\n")
        header = (
            f"Command: `{command}`; recipe `configs/hscnet/synthetic.yaml` + `{' '.join(recipe)}`; "
            f"data: procedural set, seed {data_config.seed}, {data_config.train_videos}/"
            f"{data_config.val_videos}/{data_config.test_videos} videos; test split, final spans, "
            f"IoU >= m, percent, mean ± sample std over seeds. Wall time: {wall / 60:.1f} min "
            f"({args.threads} thread(s))."
        )
        atomic_write_text(md_path, markdown(runs, prior, header) + "\n")
        return wall

    for seed in seeds:
        for variant in VARIANTS:
            if any(r["variant"] == variant.name and r["seed"] == seed for r in runs):
                continue
            runs.append(_run(variant, seed, data.root, out, recipe))
            wall = write()
            m = runs[-1]["metrics"]
            print(
                f"[{wall / 60:5.1f} min] {variant.name} seed {seed}: "
                + ", ".join(f"{c} {100 * m[c]:.2f}" for c in COLUMNS),
                flush=True,
            )
    wall = write()
    print(md_path.read_text())
    print(f"command: {command}\nwall time: {wall / 60:.1f} min; wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
