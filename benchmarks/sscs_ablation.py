"""Sscs ablations (Tables 1 and 2 of Ding et al., ICCV 2021) rerun on the procedural benchmark.

Trains ``configs/<family>/synthetic_sscs.yaml`` (2D-TAN or LGI with the Sscs branch, docs/sscs.md)
once per (row, seed) through the ordinary engine, scores the best-by-val checkpoint's spans on the
test split with the one evaluator, and writes:

* ``<results>/sscs_ablation_<family>.json``: every run's metrics (fractions), seconds and Sscs
  settings, merged into the file under a lock after each run, so an interrupted run keeps what it
  finished (rerunning skips runs already there unless ``--no-reuse``) and processes given other
  ``--rows`` or ``--seeds`` can share the file;
* ``<results>/sscs_ablation_<family>_table<n>.md``: mean ± std over seeds of R1@0.3/0.5/0.7 and mIoU
  (percent), the text-blind prior's row for reference, the command and the runs' summed training time.

Tables: 1, the supervision ablation (the base model, ``model.sscs=null``; GTC contrast (eq. 2) /
caption (eq. 3) / both; SS contrast (eq. 6) / caption (eq. 7) / both: the unused objective is
``none``); 2, 2D-TAN only, support set {V-SS, GT-SS, Non-GT-SS} x function {CA, SA, FC, Conv, MP,
AP} with both SS objectives. A run is keyed by its Sscs settings, so Table 2's V-SS + CA cell reuses
Table 1's "SS both" runs (one results file per family). Run from the repository root, one thread::

    OMP_NUM_THREADS=1 python benchmarks/sscs_ablation.py --family tan2d --table 1 --seeds 0 1 2
    python benchmarks/sscs_ablation.py --family lgi --table 1 --quick   # tiny data, 1 epoch: a smoke check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from higround.data.synthetic import SyntheticConfig
from higround.demo import CONFIGS, ensure_dataset, mean_std, prior_metrics, train_and_score

# The results file, run loop and command line the ablation scripts share (benchmarks/_ablation_runs.py).
if "_ablation_runs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "_ablation_runs", Path(__file__).with_name("_ablation_runs.py")
    )
    assert _spec is not None and _spec.loader is not None
    sys.modules["_ablation_runs"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["_ablation_runs"])
runs_lib = sys.modules["_ablation_runs"]

FORMAT = "higround.sscs_ablation.v1"
COLUMNS = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")
FAMILIES = ("tan2d", "lgi")
TABLES = ("1", "2")
TITLE = {"tan2d": "2D-TAN", "lgi": "LGI"}
BASE = "base"
SUPPORT_LABEL = {"video": "V-SS", "gt": "GT-SS", "non_gt": "Non-GT-SS"}
AGGREGATE_LABEL = {"ca": "CA", "sa": "SA", "fc": "FC", "conv": "Conv", "mp": "MP", "ap": "AP"}


@dataclass(frozen=True)
class Row:
    """One ablation row: its label and its Sscs settings (``None``: the branch off, the base model).

    Attributes:
        name: the row label (also the run's name on disk).
        sscs: ``contrast``, ``caption``, ``support``, ``aggregate``; the recipe's values for the rest.
    """

    name: str
    sscs: dict[str, str] | None

    @property
    def overrides(self) -> tuple[str, ...]:
        """The recipe overrides of this row."""
        if self.sscs is None:
            return ("model.sscs=null",)
        return tuple(f"model.sscs.{key}={value}" for key, value in self.sscs.items())

    @property
    def key(self) -> str:
        """What identifies its runs in the results file: the settings, not the label (shared cells)."""
        return json.dumps(self.sscs, sort_keys=True)


def _ss(contrast: str, caption: str, support: str = "video", aggregate: str = "ca") -> dict[str, str]:
    return {"contrast": contrast, "caption": caption, "support": support, "aggregate": aggregate}


# Table 1 (paper's order). GTC rows keep the recipe's support/aggregate (V-SS, CA): GTC ignores them.
TABLE1 = (
    Row(BASE, None),
    Row("GTC contrast", _ss("gtc", "none")),
    Row("GTC caption", _ss("none", "gtc")),
    Row("GTC both", _ss("gtc", "gtc")),
    Row("SS contrast", _ss("ss", "none")),
    Row("SS caption", _ss("none", "ss")),
    Row("SS both", _ss("ss", "ss")),
)
# Table 2: support (rows) x function (columns), both SS objectives.
TABLE2 = tuple(
    Row(f"{SUPPORT_LABEL[s]} {AGGREGATE_LABEL[a]}", _ss("ss", "ss", s, a))
    for s in SUPPORT_LABEL
    for a in AGGREGATE_LABEL
)
ROWS = {"1": TABLE1, "2": TABLE2}
TITLES = {
    "1": "Table 1: supervision (GTC eq. 2-3, SS eq. 6-7; V-SS + CA)",
    "2": "Table 2: support set x function (SS contrast + caption)",
}

# The ablation recipe is the family's synthetic_sscs.yaml as it stands, on the demo's data.
RECIPE: tuple[str, ...] = ()
DATA = SyntheticConfig(seed=0)
# Smoke check: tiny data, one epoch, a small branch (it still takes every code path of a run).
QUICK_RECIPE = (
    "trainer.max_epochs=1",
    "model.sscs.dim=16",
    "model.sscs.decoder_hidden=16",
    "model.sscs.gt_encoder_heads=2",
    "model.sscs.gt_encoder_ffn_dim=32",
)
QUICK_DATA = SyntheticConfig(seed=0, train_videos=24, val_videos=6, test_videos=6)


def recipe_path(family: str) -> Path:
    """The family's Sscs recipe on the procedural benchmark."""
    return CONFIGS / family / "synthetic_sscs.yaml"


def _run(family: str, row: Row, seed: int, root: Path, out: Path, recipe: Sequence[str]) -> dict[str, Any]:
    """Train and score one (row, seed); returns its JSON record."""
    # The branch's size overrides of the quick recipe cannot reach a null section: the base row drops them.
    recipe = [o for o in recipe if row.sscs is not None or not o.startswith("model.sscs.")]
    started = time.perf_counter()
    metrics, best_val = train_and_score(
        recipe_path(family),
        [
            f"seed={seed}",
            f"output_dir={out / 'runs'}",
            f"name={family}_{row.name.replace(' ', '_').replace('-', '')}_seed{seed}",
            f"data.root={root}",
            f"data.features={root / 'features.h5'}",
            "trainer.progress_bar=false",
            *recipe,
            *row.overrides,
        ],
    )
    return {
        "row": row.name,
        "key": row.key,
        "sscs": row.sscs,
        "seed": seed,
        "overrides": list(row.overrides),
        "metrics": metrics,
        "best_val_mIoU": best_val,
        "seconds": time.perf_counter() - started,
    }


def markdown(
    family: str, table: str, runs: Sequence[dict[str, Any]], prior: dict[str, float], header: str
) -> str:
    """One table, rows in the paper's order (rows without runs left out), the prior's row under it.

    Table 2 also shows the base model's row when Table 1 has run it, and a support x function grid of
    mean mIoU like the paper's layout.
    """
    rows = ROWS[table] if table == "1" else (TABLE1[0], *TABLE2)
    lines = [header, "", f"### {TITLE[family]}, {TITLES[table]}", ""]
    lines.append("| row | seeds | " + " | ".join(COLUMNS) + " |")
    lines.append("|---|---:|" + "---:|" * len(COLUMNS))
    for row in rows:
        done = [r for r in runs if r["key"] == row.key]
        if done:
            cells = [mean_std([r["metrics"][c] for r in done]) for c in COLUMNS]
            lines.append(f"| {row.name} | {len(done)} | " + " | ".join(cells) + " |")
    prior_cells = [f"{100 * prior[c]:.2f}" for c in COLUMNS]
    lines.append("| prior (i, n), text-blind | - | " + " | ".join(prior_cells) + " |")
    if table == "2":
        lines += ["", "mIoU (percent, mean over seeds; - not run):", ""]
        lines.append("| support | " + " | ".join(AGGREGATE_LABEL.values()) + " |")
        lines.append("|---|" + "---:|" * len(AGGREGATE_LABEL))
        for support, label in SUPPORT_LABEL.items():
            cells = []
            for aggregate in AGGREGATE_LABEL:
                key = Row("", _ss("ss", "ss", support, aggregate)).key
                mious = [float(r["metrics"]["mIoU"]) for r in runs if r["key"] == key]
                cells.append(f"{100 * statistics.fmean(mious):.2f}" if mious else "-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every (row, seed) of the table not yet in the results file; write JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=FAMILIES, required=True, help="the Sscs-carrying family")
    parser.add_argument(
        "--table", choices=TABLES, required=True, help="1: supervision; 2: support x function"
    )
    parser.add_argument("--rows", nargs="+", metavar="ROW", help="only these rows of the table (by label)")
    runs_lib.add_run_arguments(parser, "runs/sscs_ablation")
    args = parser.parse_args(argv)
    if args.table == "2" and args.family != "tan2d":
        parser.error("--table 2 is the paper's 2D-TAN ablation: use --family tan2d")
    rows = ROWS[args.table]
    if args.rows:
        unknown = sorted(set(args.rows) - {r.name for r in rows})
        if unknown:
            parser.error(
                f"--rows: not rows of table {args.table}: {unknown}; known: {[r.name for r in rows]}"
            )
        rows = tuple(r for r in rows if r.name in args.rows)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # dozens of runs' banners
    seeds = args.seeds[:1] if args.quick else args.seeds
    recipe, data_config = (QUICK_RECIPE, QUICK_DATA) if args.quick else (RECIPE, DATA)
    out = Path(args.out) / ("quick" if args.quick else "full")
    results = Path(args.results)
    stem = f"sscs_ablation_{args.family}" + ("_quick" if args.quick else "")
    json_path, md_path = results / f"{stem}.json", results / f"{stem}_table{args.table}.md"
    command = runs_lib.command_line("benchmarks/sscs_ablation.py", argv)

    started = time.perf_counter()
    data, _ = ensure_dataset(out / "data", data_config)
    prior = prior_metrics(data)

    data_record = json.loads(json.dumps(asdict(data_config)))  # as it reads back from the JSON file
    setup = {"family": args.family, "recipe": list(recipe), "data": data_record}

    def payload(runs: list[dict[str, Any]], compute: float) -> dict[str, Any]:
        return {
            "format": FORMAT,
            **setup,
            "command": command,
            "threads": args.threads,
            "compute_seconds": compute,
            "prior": prior,
            "runs": runs,
        }

    def table(runs: list[dict[str, Any]], compute: float) -> str:
        header = (
            f"Command: `{command}`; recipe `configs/{args.family}/synthetic_sscs.yaml`"
            + (f" + `{' '.join(recipe)}`" if recipe else "")
            + f"; data: procedural set, seed {data_config.seed}, {data_config.train_videos}/"
            f"{data_config.val_videos}/{data_config.test_videos} videos; test split, IoU >= m, percent, "
            f"mean ± sample std over seeds. Training time of the runs in this results file: "
            f"{compute / 60:.1f} min summed over {len(runs)} runs ({args.threads} thread(s) each)."
        )
        return markdown(args.family, args.table, runs, prior, header)

    shared = runs_lib.SharedResults(
        json_path,
        md_path,
        setup,
        identity=lambda r: (r["key"], r["seed"]),
        payload=payload,
        markdown=table,
        reuse=args.reuse,
    )
    jobs = [
        runs_lib.Job(
            (row.key, seed),
            f"{row.name} seed {seed}",
            lambda row=row, seed=seed: _run(args.family, row, seed, data.root, out, recipe),
        )
        for seed in seeds
        for row in rows
    ]

    def summary(record: dict[str, Any]) -> str:
        return ", ".join(f"{c} {100 * record['metrics'][c]:.2f}" for c in COLUMNS)

    runs = runs_lib.run_missing(jobs, shared, summary, started)
    runs_lib.print_report(shared, runs, command, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
