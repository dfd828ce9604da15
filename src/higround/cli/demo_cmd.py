"""``higround demo``: train a model family on the procedural benchmark on a CPU, next to the prior.

``higround demo [--out runs/demo] [--seed 0] [--model FAMILY] [--config FILE]
[--paragraphs 3] [KEY=VALUE ...]`` writes the procedural set (kept when unchanged), trains the
family's ``configs/<family>/synthetic.yaml`` (HSCNet by default) with the ordinary engine, scores
the test split with the one evaluator next to the text-blind priors, prints the table and writes
metrics, predictions and a timeline picture under ``--out`` (docs/demo.md). Overrides are recipe
keys (``trainer.max_epochs=2``) or generator knobs (``synthetic.noise=2``). The logic lives in
:mod:`higround.demo`.
"""

from __future__ import annotations

import argparse
from typing import Any

from higround.cli.options import non_negative_int, positive_int


def register(sub: Any) -> None:
    """Add ``demo`` to the top-level sub-parsers."""
    parser = sub.add_parser(
        "demo",
        help="learn grounding on procedural data on a CPU (~5 min) and compare with the prior",
        description=(
            "Generate the procedural benchmark, train a model on it (HSCNet by default; --config "
            "picks the recipe and with it the model family), evaluate the test split next to "
            "the text-blind priors, and draw a timeline of a few paragraphs."
        ),
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default %(default)s)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the data and the training run"
    )
    parser.add_argument(
        "--model",
        metavar="FAMILY",
        help="grounding model family: hscnet (default), tan2d, lgi, prvg, moment_detr, qd_detr; "
        "its recipe is configs/FAMILY/synthetic.yaml",
    )
    parser.add_argument("--config", help="training recipe (default configs/<--model>/synthetic.yaml)")
    parser.add_argument(
        "--paragraphs", type=positive_int, default=3, help="test paragraphs drawn (default 3)"
    )
    parser.add_argument("--no-progress-bar", action="store_true", help="train without the progress bar")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="recipe overrides (trainer.max_epochs=2) or generator knobs (synthetic.train_videos=100)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the table and where everything went."""
    from higround.demo import run_demo  # pulls in torch and Lightning

    result = run_demo(
        args.out,
        seed=args.seed,
        overrides=args.overrides,
        config_path=args.config,
        model=args.model,
        paragraphs=args.paragraphs,
        progress_bar=not args.no_progress_bar,
    )
    test = result.data.annotations["test"]
    print(f"\nprocedural test split ({test}); hit: IoU >= m; values in %")
    print(result.table)
    if any(r.target != "sentence" for r in result.rows):
        print("* paragraph decoder's span against the paragraph's extent (the hull of its sentence spans)")
    print(f"\ntraining: {result.seconds['train']:.0f} s; total {result.seconds['total']:.0f} s")
    print(f"metrics:     {result.metrics_json}")
    print(f"predictions: {', '.join(str(p) for p in result.predictions.values())}")
    print(f"timeline:    {result.picture}")
    print(f"checkpoint:  {result.checkpoint}")
    return 0
