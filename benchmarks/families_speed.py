"""Every model family at its recipes' shapes: parameters, training throughput, inference latency.

For each recipe named (default: every ``configs/<family>/<dataset>.yaml`` of the grounding families
except the procedural ``synthetic.yaml``), the model of the recipe is built with GloVe-sized word
vectors (300-d) and fed random inputs of the recipe's shapes: ``data.batch_size`` samples of
``model.num_clips`` clips of ``model.video_dim`` features; a paragraph family's sample holds
``--sentences`` sentences, a sentence family's one, of ``--words`` words each. Speed does not depend
on the values. Timed (median of ``--steps`` after two warm-ups):

* training: one full step (forward, the family's loss, backward, Adam) on one batch, reported as
  samples/s (paragraphs or sentences, the recipe's unit) and sentences/s;
* FLOPs: the training step once more under ``torch.utils.flop_counter`` (matmuls, convolutions and
  attention, forward and backward): GFLOP per sample and the rate the timed step reached;
* inference: one sample (batch 1) through the model and the family's ``predictions`` (2D-TAN's
  NMS included), in eval mode without gradients.

Run from the repository root (docs/benchmarks.md holds the figures)::

    python benchmarks/families_speed.py --device cpu --threads 2 --batch 1 --steps 2 --warmup 1
    python benchmarks/families_speed.py --device cuda
    python benchmarks/families_speed.py --recipes configs/tan2d/tacos.yaml --steps 5
    python benchmarks/families_speed.py --threads 2 --ratio --precision bf16 \\
        --recipes configs/hscnet/activitynet_captions.yaml configs/prvg/activitynet_captions.yaml
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from higround.data.batch import ParagraphBatch
from higround.data.batching import ParagraphItem, collate_paragraphs
from higround.data.dataset import PARAGRAPH
from higround.data.synthetic import SyntheticConfig
from higround.engine.config import Config, load_config
from higround.models import count_parameters
from higround.models.registry import FAMILIES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WORD_DIM = 300  # GloVe 300-d, the papers' vectors
VOCAB = 10_000


def _cpu_flash_flops() -> dict[Any, Any]:
    """``benchmarks/hscnet_profile.py``'s FLOP formulas of the CPU flash attention kernels (torch's
    counter knows the CUDA ones only)."""
    name = "hscnet_profile_benchmark"
    if name not in sys.modules:  # registered first: its dataclasses look their module up
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("hscnet_profile.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return dict(sys.modules[name].CPU_FLASH_FLOPS)


def default_recipes() -> list[Path]:
    """Every dataset recipe of every grounding family of the table (``base.yaml`` and the procedural
    ``synthetic*.yaml`` left out; ``*_sscs.yaml`` kept: Sscs's training cost is part of its recipe).
    Retrieval families (HSE) embed whole collections: their speed is another benchmark's."""
    recipes = []
    for name in sorted(n for n, family in FAMILIES.items() if family.task == "grounding"):
        folder = CONFIGS / name
        recipes += [
            p
            for p in sorted(folder.glob("*.yaml"))
            if p.stem != "base" and not p.stem.startswith("synthetic")
        ]
    return recipes


def make_batch(
    config: Config, video_dim: int, batch: int, sentences: int, words: int, seed: int = 0
) -> ParagraphBatch:
    """Random samples of the recipe's shapes (``sentences`` per sample for a paragraph family; a SHINE
    recipe's ``hard_negatives`` negatives of ``words`` words per sentence)."""
    model = config.model
    per_sample = sentences if (config.data.unit or config.family.unit) == PARAGRAPH else 1
    levels = int(model["shine"]["hard_negatives"]) if model.get("shine") else 0
    g = torch.Generator().manual_seed(seed)
    items = []
    for b in range(batch):
        starts = torch.sort(torch.rand(per_sample, generator=g) * 0.7).values
        ends = starts + 0.1 + 0.2 * torch.rand(per_sample, generator=g)
        negatives = torch.randint(2, VOCAB, (per_sample * levels * words,), generator=g) if levels else None
        items.append(
            ParagraphItem(
                video=torch.randn(int(model["num_clips"]), video_dim, generator=g),
                words=torch.randint(2, VOCAB, (per_sample * words,), generator=g),
                sentence_length=torch.full((per_sample,), words),
                spans=torch.stack([starts, ends.clamp(max=1.0)], -1),
                duration=120.0,
                video_id=f"v{b // 2}",  # two samples per video, as sentence batches often have
                paragraph_index=0,
                sentence_index=torch.arange(per_sample),
                negative_words=negatives,
                negative_length=torch.full((per_sample, levels), words) if levels else None,
            )
        )
    return collate_paragraphs(items)


def measure(
    recipe: Path,
    device_name: str,
    steps: int,
    sentences: int,
    words: int,
    batch: int | None = None,
    warmup: int = 2,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Parameters, training-step and one-sample inference times of ``recipe``'s model (training batch:
    ``batch`` or the recipe's ``data.batch_size``; ``warmup`` untimed repetitions first; ``bf16``:
    forward passes and losses under bfloat16 autocast, as ``trainer.precision: bf16-mixed``)."""
    device = torch.device(device_name)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    config = load_config(recipe)
    family = config.family
    # A procedural recipe leaves video_dim to the data: its generator's default size.
    video_dim = int(config.model.get("video_dim") or SyntheticConfig().feature_dim)
    model_config = family.config({**config.model, "video_dim": video_dim, "word_dim": WORD_DIM})
    torch.manual_seed(0)
    model = family.build_model(model_config, torch.randn(VOCAB, WORD_DIM)).to(device)
    criterion = family.build_loss(model_config).to(device)
    size = batch or config.data.batch_size
    train_batch = make_batch(config, video_dim, size, sentences, words).to(device)
    one = make_batch(config, video_dim, 1, sentences, words, seed=1).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.optim.lr)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn: Any) -> float:
        times = []
        for _ in range(steps + warmup):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times[warmup:])

    def train_step() -> None:
        with autocast():
            loss = criterion(model(train_batch), train_batch)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer() -> None:
        with torch.inference_mode():
            with autocast():
                output = model(one)
            family.predictions(output, one)

    model.train()
    step = timed(train_step)
    with FlopCounterMode(display=False, custom_mapping=_cpu_flash_flops()) as counter:
        train_step()
    model.eval()
    latency = timed(infer)
    sentences_per_sample = int(train_batch.sentence_mask.sum()) / size
    return {
        "recipe": str(recipe.relative_to(CONFIGS.parent))
        if recipe.is_relative_to(CONFIGS.parent)
        else str(recipe),
        "family": family.title,
        "unit": config.data.unit or family.unit,
        "clips": int(config.model["num_clips"]),
        "video_dim": video_dim,
        "batch": size,
        "parameters": count_parameters(model),
        "step_ms": 1000 * step,
        "samples_per_s": size / step,
        "sentences_per_s": size * sentences_per_sample / step,
        "inference_ms": 1000 * latency,
        "train_gflop_per_sample": counter.get_total_flops() / size / 1e9,
        "train_gflop_per_s": counter.get_total_flops() / step / 1e9,
        "precision": precision,
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    header = [
        "recipe", "family", "unit", "N_V x D_v", "batch", "parameters", "train step ms",
        "samples/s", "sentences/s", "train GFLOP/sample", "train GFLOP/s", "inference ms (1 sample)",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            r["recipe"], r["family"], r["unit"], f"{r['clips']} x {r['video_dim']}", str(r["batch"]),
            f"{r['parameters'] / 1e6:.2f} M", f"{r['step_ms']:.0f}", f"{r['samples_per_s']:.3g}",
            f"{r['sentences_per_s']:.3g}", f"{r['train_gflop_per_sample']:.2f}",
            f"{r['train_gflop_per_s']:.0f}", f"{r['inference_ms']:.1f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(rows: Sequence[dict[str, Any]]) -> str:
    """Every row against the first, measured in the same run: training samples/s and inference
    latency as the ratio first / row (above 1: the first recipe is faster)."""
    first = rows[0]
    lines = [
        f"| vs {first['recipe']} | training samples/s ratio | sentences/s ratio | inference speed ratio |",
        "|---|---:|---:|---:|",
    ]
    for r in rows[1:]:
        train = first["samples_per_s"] / r["samples_per_s"]
        sentences = first["sentences_per_s"] / r["sentences_per_s"]
        lines.append(
            f"| {r['recipe']} | {train:.2f} | {sentences:.2f} | "
            f"{r['inference_ms'] / first['inference_ms']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the recipes and print the table with the machine it ran on."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", type=Path, nargs="+", help="recipes (default: every dataset recipe)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--steps", type=int, default=10, help="timed repetitions (median)")
    parser.add_argument("--batch", type=int, help="training batch (default: each recipe's data.batch_size)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    parser.add_argument("--sentences", type=int, default=4, help="sentences per paragraph sample")
    parser.add_argument("--words", type=int, default=14, help="words per sentence")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="fp32, or bfloat16 autocast"
    )
    parser.add_argument(
        "--ratio", action="store_true", help="also print every recipe's speed against the first one's"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipes = args.recipes or default_recipes()
    rows = [
        measure(
            r, args.device, args.steps, args.sentences, args.words, args.batch, args.warmup, args.precision
        )
        for r in recipes
    ]
    print(table(rows))
    if args.ratio and len(rows) > 1:
        print("\n" + ratios(rows))
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(
        f"\n{device}; torch {torch.__version__}, {torch.get_num_threads()} threads; {args.precision}; "
        f"median of {args.steps} after {args.warmup} warm-ups; {args.words} words per sentence, "
        f"{args.sentences} sentences per paragraph sample; random inputs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
