"""The demo's table as a spread over seeds: ``higround demo`` once per seed, then mean ± std per row.

A training run is bit-identical only on one machine at one thread count; across machines (or thread
counts) the digits move, so the README reports the demo as the spread over seeds (each seed draws
its own procedural data and its own initialisation). Run from the repository root::

    python benchmarks/demo_seeds.py --seeds 0 1 2 --out runs/demo_seeds
    python benchmarks/demo_seeds.py --models hscnet tan2d lgi --seeds 0 1 2 --out runs/demo_seeds
    python benchmarks/demo_seeds.py --seeds 0 1 2 --out runs/demo_seeds --reuse   # only summarise

Each model's demo of each seed goes to ``<out>/<model>/seed<S>`` (its ``metrics.json`` as ``higround
demo --model <model>`` writes it); ``--reuse`` keeps a run whose ``metrics.json`` is there instead of
training it again. Prints one markdown table: the text-blind priors (the same for every model of a
seed: they see only the seed's data), then every model's rows, mean ± sample std (percent), the
per-seed mIoU, the thread count and the training wall times per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from higround.demo import mean_std, run_demo

COLUMNS = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")


def seed_metrics(out: Path, model: str, seed: int, reuse: bool) -> dict[str, Any]:
    """The ``metrics.json`` of ``model``'s demo of ``seed`` under ``out``, training it unless reused."""
    folder = out / model / f"seed{seed}"
    path = folder / "metrics.json"
    if not (reuse and path.is_file()):
        run_demo(folder, seed=seed, model=model, progress_bar=False)
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _is_prior(row: dict[str, Any]) -> bool:
    return str(row["name"]).startswith("prior")


def summary(runs: dict[str, dict[int, dict[str, Any]]]) -> str:
    """Markdown: the priors (from the first model's runs), then each model's rows, mean ± std over
    seeds, then the per-seed mIoU; ``runs[model][seed]`` is a demo's metrics.json."""
    models = list(runs)
    seeds = sorted(runs[models[0]])
    head = ["method", *COLUMNS, *(f"mIoU seed {s}" for s in seeds)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    sources = [(models[0], True)] + [(m, False) for m in models]
    for model, priors in sources:
        first = runs[model][seeds[0]]["rows"]
        for i, row in enumerate(first):
            if _is_prior(row) != priors:
                continue
            metrics = [runs[model][s]["rows"][i]["metrics"] for s in seeds]
            cells = [mean_std([m[c] for m in metrics]) for c in COLUMNS]
            per_seed = [f"{100 * m['mIoU']:.2f}" for m in metrics]
            lines.append("| " + " | ".join([row["name"], *cells, *per_seed]) + " |")
    lines.append("")
    train = "; ".join(
        f"{model} " + ", ".join(f"{runs[model][s]['seconds']['train']:.0f}" for s in seeds)
        for model in models
    )
    lines.append(
        f"seeds {' '.join(map(str, seeds))}; torch threads {torch.get_num_threads()}; "
        f"training seconds per seed: {train}; IoU >= m, percent, mean ± sample std"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or reuse) the demo per seed and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["hscnet"], help="model families (default hscnet)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/demo_seeds"))
    parser.add_argument("--reuse", action="store_true", help="keep seeds whose metrics.json exists")
    args = parser.parse_args(argv)
    runs = {m: {s: seed_metrics(args.out, m, s, args.reuse) for s in args.seeds} for m in args.models}
    print(summary(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
