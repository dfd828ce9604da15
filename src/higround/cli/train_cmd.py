"""``higround train``: train a model from a YAML recipe with ``key=value`` overrides.

``higround train --config configs/hscnet/tacos.yaml data.root=DIR data.features=FILE trainer.devices=2``
trains, writes checkpoints and logs into ``output_dir/name`` and prints where they are. See
docs/training.md for multi-GPU / multi-node use and exact resuming (``resume=CKPT``).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import yaml


def register(sub: Any) -> None:
    """Add ``train`` to the top-level sub-parsers."""
    parser = sub.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train from a YAML recipe; override any key with section.key=value.",
    )
    parser.add_argument("--config", help="YAML recipe, e.g. configs/hscnet/tacos.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. data.features=/x.hdf5 trainer.max_epochs=1 resume=last.ckpt",
    )
    parser.add_argument("--print-config", action="store_true", help="print the merged recipe and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; prints the run folder, the best checkpoint and the exported weights."""
    # Imported here: the engine pulls in torch and Lightning, which other sub-commands do not need.
    from higround.engine.config import load_config
    from higround.engine.trainer import fit

    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = fit(config)
    if not result.global_zero:
        return 0
    print(f"run folder:       {result.run_dir}")
    print(f"best checkpoint:  {result.best_checkpoint}")
    print(f"last checkpoint:  {result.last_checkpoint}")
    if result.weights is not None:
        print(f"exported weights: {result.weights} (+ {result.weights.with_suffix('.json').name})")
    if result.best_score is not None and result.monitor == "val/mIoU":
        print(f"best val mIoU:    {100 * result.best_score:.2f}")
    elif result.best_score is not None:  # a retrieval family's val/rsum, in % as CMHSE prints it
        print(f"best val rsum:    {100 * result.best_score:.2f} (R@1 + R@5 + R@50 of both directions, %)")
    return 0
