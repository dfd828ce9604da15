"""SHINE on the procedural benchmark: Moment-DETR and QD-DETR trained with and without SHINE, scored on
every test sentence and on those with an unseen verb-object composition.

The procedural set (:mod:`higround.data.synthetic`) holds out a fifth of its verb-object pairs from
training; its val and test sentences that use one carry them in ``novels`` (as Charades-CG's
novel-composition split does). Its grammar makes SHINE's hierarchical negatives exactly (level 1
changes the verb, level 2 also the object, level 3 more): ``higround data negatives ... --grammar``.

For every (family, row, seed) this trains ``configs/<family>/synthetic.yaml`` (row ``base``) or
``configs/<family>/synthetic_shine.yaml`` (row ``shine``: the base recipe + SHINE with the paper's
defaults, docs/shine.md; row ``shine_light``: the same with the coarse and fine ranking weights at 0.1)
through the ordinary engine, scores the best-by-val checkpoint on the test
split with the one evaluator, on (a) every test sentence and (b) the sentences with a non-empty
``novels``, and writes:

* ``<results>/shine_ablation.json``: every run's R1@0.3/0.5/0.7 and mIoU (fractions) on both subsets,
  its training and total seconds, merged into the file under a lock after each run
  (``benchmarks/_ablation_runs.py``): an interrupted run keeps what it finished, a rerun skips it
  (unless ``--no-reuse``), processes given other ``--families``/``--rows``/``--seeds`` share the file;
* ``<results>/shine_ablation.md``: R1@0.5, R1@0.7 and mIoU (percent) as mean ± sample std over seeds
  per subset, with the text-blind prior's row, the commands and the summed training time.

Run from the repository root, one thread::

    OMP_NUM_THREADS=1 python benchmarks/shine_ablation.py                  # 2 families x 3 rows x 3 seeds
    OMP_NUM_THREADS=1 python benchmarks/shine_ablation.py --families qd_detr --seeds 0
    python benchmarks/shine_ablation.py --quick        # tiny data, 1 epoch, seed 0: a smoke check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from higround.baselines.prior import PositionPrior
from higround.cli.main import main as higround_main
from higround.data.readers import load_dataset
from higround.data.schema import GroundingDataset
from higround.data.synthetic import SyntheticConfig, SyntheticPaths
from higround.demo import CONFIGS, DATASET, ensure_dataset, mean_std
from higround.metrics import PredictionRecord, evaluate, thresholds_for

# The results file, run loop and command line the ablation scripts share (benchmarks/_ablation_runs.py).
if "_ablation_runs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "_ablation_runs", Path(__file__).with_name("_ablation_runs.py")
    )
    assert _spec is not None and _spec.loader is not None
    sys.modules["_ablation_runs"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["_ablation_runs"])
runs_lib = sys.modules["_ablation_runs"]

FORMAT = "higround.shine_ablation.v1"
COLUMNS = ("R1@0.5", "R1@0.7", "mIoU")
FAMILIES = ("moment_detr", "qd_detr")
TITLE = {"moment_detr": "Moment-DETR", "qd_detr": "QD-DETR"}
BASE, SHINE, LIGHT = "base", "shine", "shine_light"
ROWS = (BASE, SHINE, LIGHT)
ROW_TITLE = {BASE: "", SHINE: " + SHINE", LIGHT: " + SHINE (λ_cr = λ_fr = 0.1)"}
# Row ``shine_light``: SHINE with its two ranking terms at a tenth of the paper's weight, the one change
# that let a stuck QD-DETR + SHINE seed take off within 20 epochs (docs/shine.md).
ROW_OVERRIDES = {LIGHT: ("model.loss_weights.shine_coarse=0.1", "model.loss_weights.shine_fine=0.1")}
ALL, NOVEL = "all", "novel"
SUBSETS = {
    ALL: "every test sentence",
    NOVEL: "test sentences with an unseen verb-object composition (non-empty `novels`)",
}
NEGATIVES = "negatives.jsonl"  # written beside the data by `higround data negatives --grammar`

# The recipes as they stand, on the demo's data (600 / 100 / 100 videos), for twice the recipes'
# epochs, both rows alike: SHINE's ranking terms (weight 1) delay the epoch at which the spans start
# to follow the text (Moment-DETR: about epoch 28 without, 48 with; docs/shine.md), and at the
# recipes' own budget the SHINE runs were cut before it.
RECIPE: tuple[str, ...] = ()
EPOCHS = {"moment_detr": 80, "qd_detr": 40}
DATA = SyntheticConfig(seed=0)
# Smoke check: tiny data, one epoch (every code path of a run; its test split has 3 novel sentences).
QUICK_RECIPE = ("trainer.max_epochs=1",)
QUICK_DATA = SyntheticConfig(seed=0, train_videos=24, val_videos=6, test_videos=6)


def recipe_path(family: str, row: str) -> Path:
    """The family's procedural-set recipe: the base model's, or with SHINE (rows ``shine`` and
    ``shine_light``, the latter with :data:`ROW_OVERRIDES`)."""
    return CONFIGS / family / ("synthetic.yaml" if row == BASE else "synthetic_shine.yaml")


def ensure_negatives(data: SyntheticPaths, regenerate: bool) -> Path:
    """The training split's hierarchical negatives, written by ``higround data negatives --grammar``
    (the grammar's exact word classes) unless present and the data was reused.

    Raises:
        SystemExit: the command failed (it printed why).
    """
    path = data.root / NEGATIVES
    if regenerate or not path.is_file():
        argv = ["data", "negatives", DATASET, "--root", str(data.root), "--split", "train"]
        code = higround_main([*argv, "--out", str(path), "--grammar", str(data.manifest)])
        if code != 0:
            raise SystemExit(code)
    return path


def novel_subset(dataset: GroundingDataset) -> GroundingDataset:
    """``dataset`` cut to its sentences with an unseen composition (non-empty ``novels``); paragraphs
    and videos left without a sentence are dropped."""
    videos = []
    for video in dataset.videos:
        paragraphs = []
        for paragraph in video.paragraphs:
            kept = tuple(s for s in paragraph.sentences if s.extra.get("novels"))
            if kept:
                paragraphs.append(replace(paragraph, sentences=kept))
        if paragraphs:
            videos.append(replace(video, paragraphs=tuple(paragraphs)))
    return replace(dataset, videos=videos)


def subset_metrics(
    records: Sequence[PredictionRecord], test: GroundingDataset
) -> dict[str, dict[str, float]]:
    """The one evaluator's metrics (fractions) on every test sentence and on the novel ones alone
    (:func:`novel_subset`; empty when the split has none)."""
    thresholds = thresholds_for(DATASET)
    novel = novel_subset(test)
    keys = {s.key for _, s in novel.sentences()}
    metrics = {ALL: evaluate(records, test, thresholds)}
    metrics[NOVEL] = evaluate([r for r in records if r.key in keys], novel, thresholds) if keys else {}
    return metrics


def prior_metrics(data: SyntheticPaths) -> dict[str, dict[str, float]]:
    """The text-blind prior (i, n) fitted on the train split, on both subsets of the test split."""
    test = load_dataset(DATASET, data.root, "test")
    records, _ = PositionPrior.fit(load_dataset(DATASET, data.root, "train")).predict(test)
    return subset_metrics(records, test)


def _run(
    family: str, row: str, seed: int, data: SyntheticPaths, negatives: Path, out: Path, recipe: Sequence[str]
) -> dict[str, Any]:
    """Train and score one (family, row, seed); returns its JSON record."""
    from higround.engine.checkpoint import load_checkpoint
    from higround.engine.config import load_config  # the engine pulls in Lightning
    from higround.engine.evaluation import open_checkpoint
    from higround.engine.trainer import fit

    name = f"{family}_{row}_seed{seed}"
    # An interrupted run goes on from its last epoch (resuming is exact: docs/training.md).
    last = out / "runs" / name / "checkpoints" / "last.ckpt"
    overrides = [
        f"trainer.max_epochs={EPOCHS[family]}",
        f"seed={seed}",
        f"output_dir={out / 'runs'}",
        f"name={name}",
        f"data.root={data.root}",
        f"data.features={data.features}",
        *([] if row == BASE else [f"data.negatives={negatives}"]),
        *ROW_OVERRIDES.get(row, ()),
        "trainer.progress_bar=false",
        *recipe,
    ]
    resumed = None
    if last.is_file():
        epoch = load_checkpoint(last).epoch  # Lightning's: the index of the last finished epoch
        resumed = None if epoch is None else epoch + 1
        overrides.append(f"resume={last}")
    started = time.perf_counter()
    config = load_config(recipe_path(family, row), overrides)
    result = fit(config)
    trained = time.perf_counter() - started
    if result.best_checkpoint is None:
        raise SystemExit(f"{family} {row} seed {seed}: training wrote no checkpoint")
    checkpoint = open_checkpoint(result.best_checkpoint, device="cpu")
    split = config.data.test_split
    test = checkpoint.data.annotations(split)
    metrics = subset_metrics(checkpoint.records(split), test)
    return {
        "family": family,
        "row": row,
        "seed": seed,
        "recipe": str(recipe_path(family, row).relative_to(CONFIGS.parent)),
        "overrides": [o for o in overrides if not o.startswith(("output_dir=", "data.", "resume="))],
        "resumed_after_epochs": resumed,
        "metrics": metrics,
        "sentences": {ALL: test.sentence_count(), NOVEL: novel_subset(test).sentence_count()},
        "best_val_mIoU": result.best_score,
        "train_seconds": trained,
        "seconds": time.perf_counter() - started,
    }


def markdown(runs: Sequence[dict[str, Any]], prior: dict[str, dict[str, float]], header: str) -> str:
    """One table per subset: a line per (family, row) with runs, mean ± std over seeds, the prior last."""
    lines = [header]
    for subset, what in SUBSETS.items():
        counts = sorted({r["sentences"][subset] for r in runs}) or ["-"]
        lines += ["", f"### {what} ({'/'.join(str(c) for c in counts)} sentences)", ""]
        lines.append("| model | seeds | " + " | ".join(COLUMNS) + " |")
        lines.append("|---|---:|" + "---:|" * len(COLUMNS))
        for family in FAMILIES:
            for row in ROWS:
                done = [r for r in runs if (r["family"], r["row"]) == (family, row) and r["metrics"][subset]]
                if done:
                    cells = [mean_std([r["metrics"][subset][c] for r in done]) for c in COLUMNS]
                    name = TITLE[family] + ROW_TITLE[row]
                    lines.append(f"| {name} | {len(done)} | " + " | ".join(cells) + " |")
        if prior[subset]:
            cells = [f"{100 * prior[subset][c]:.2f}" for c in COLUMNS]
            lines.append("| prior (i, n), text-blind | - | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every (family, row, seed) not yet in the results file; write JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES), help="base models")
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=ROWS,
        default=list(ROWS),
        help="without / with SHINE / with SHINE at weight 0.1",
    )
    runs_lib.add_run_arguments(parser, "runs/shine_ablation")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # a dozen runs' banners
    seeds = args.seeds[:1] if args.quick else args.seeds
    recipe, data_config = (QUICK_RECIPE, QUICK_DATA) if args.quick else (RECIPE, DATA)
    out = Path(args.out) / ("quick" if args.quick else "full")
    results = Path(args.results)
    stem = "shine_ablation" + ("_quick" if args.quick else "")
    json_path, md_path = results / f"{stem}.json", results / f"{stem}.md"
    command = runs_lib.command_line("benchmarks/shine_ablation.py", argv)

    started = time.perf_counter()
    data, written = ensure_dataset(out / "data", data_config)
    negatives = ensure_negatives(data, regenerate=written)
    prior = prior_metrics(data)

    data_record = json.loads(json.dumps(asdict(data_config)))  # as it reads back from the JSON file
    setup = {"recipe": list(recipe), "epochs": EPOCHS, "data": data_record}

    def payload(runs: list[dict[str, Any]], compute: float) -> dict[str, Any]:
        return {
            "format": FORMAT,
            **setup,
            "command": command,
            "threads": args.threads,
            "negatives": f"higround data negatives {DATASET} --split train --grammar synthetic.json",
            "compute_seconds": compute,
            "train_seconds": sum(float(r["train_seconds"]) for r in runs),
            "prior": prior,
            "runs": runs,
        }

    def table(runs: list[dict[str, Any]], compute: float) -> str:
        trained = sum(float(r["train_seconds"]) for r in runs)
        header = (
            "Commands: "
            + "; ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", command) for r in runs))
            + "; recipes `configs/<family>/synthetic.yaml` (base) and "
            "`synthetic_shine.yaml` (+ SHINE, the paper's defaults; λ_cr = λ_fr = 0.1 in row "
            "`shine_light`) for "
            + ", ".join(f"{EPOCHS[f]} epochs ({TITLE[f]})" for f in FAMILIES)
            + (f" + `{' '.join(recipe)}`" if recipe else "")
            + f"; data: procedural set, seed {data_config.seed}, {data_config.train_videos}/"
            f"{data_config.val_videos}/{data_config.test_videos} videos; negatives: `higround data negatives "
            f"{DATASET} --grammar` of the train split; best.ckpt by val mIoU, scored on the test split, "
            f"IoU >= m, percent, mean ± sample std over seeds. Training time of the runs in this results "
            f"file: {trained / 60:.1f} min summed over {len(runs)} runs ({compute / 60:.1f} min with "
            f"scoring; {args.threads} thread(s) each)."
        )
        resumed = [r for r in runs if r.get("resumed_after_epochs")]
        if resumed:
            header += (
                f" {len(resumed)} of the runs went on from an earlier run's last checkpoint (after "
                + "/".join(sorted({str(r["resumed_after_epochs"]) for r in resumed}))
                + " epochs): their times are those of the epochs after it."
            )
        return markdown(runs, prior, header)

    shared = runs_lib.SharedResults(
        json_path,
        md_path,
        setup,
        identity=lambda r: (r["family"], r["row"], r["seed"]),
        payload=payload,
        markdown=table,
        reuse=args.reuse,
    )
    jobs = [
        runs_lib.Job(
            (family, row, seed),
            f"{TITLE[family]}{ROW_TITLE[row]} seed {seed}",
            lambda family=family, row=row, seed=seed: {
                **_run(family, row, seed, data, negatives, out, recipe),
                "command": command,
            },
        )
        for seed in seeds
        for family in args.families
        for row in args.rows
    ]

    def summary(record: dict[str, Any]) -> str:
        return "; ".join(
            f"{subset} " + ", ".join(f"{c} {100 * m[c]:.2f}" for c in COLUMNS)
            for subset, m in record["metrics"].items()
            if m
        )

    runs = runs_lib.run_missing(jobs, shared, summary, started)
    runs_lib.print_report(shared, runs, command, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
