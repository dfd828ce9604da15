"""HSCNet speed and memory: parameters, training throughput, inference latency, scaling.

Prints markdown tables (and writes JSON with ``--json``) for docs/benchmarks.md:

* ``shapes``: the paper's ActivityNet (N^V = 256, C = 1,1,1, batch 32, C3D 500-d) and TACoS
  (N^V = 512, C = 3,3,3, batch 16, C3D 4096-d) recipes with GloVe 300-d words: parameter count,
  training throughput (paragraphs/s over full Adam steps with the total loss) and inference latency
  of one paragraph;
* ``clips``: one training step and one inference as N^V grows 128 ... 4096 (ActivityNet model);
* ``sentences``: the same as the paragraph grows 1 ... 32 sentences (N^V = 256).

Peak memory is each point's own: on a GPU the allocator's peak (reset per point), on the CPU the
peak RSS of a fresh process per point (so it includes torch itself, about 300 MiB). Inputs are
random features and word ids with the shapes of the benchmark: speed does not depend on values.
``--model KEY=VALUE`` overrides :class:`~higround.models.HSCNetConfig` fields (e.g.
``attention_dropout=0``), ``--modes train`` skips the inference points, ``--threads`` sets torch's
intra-op threads. Run from the repository root::

    python benchmarks/hscnet_speed.py --device cpu --json benchmarks/results/speed_cpu.json
    python benchmarks/hscnet_speed.py --device cuda --precision bf16
    python benchmarks/hscnet_speed.py --parts clips --sweep-batch 1 --modes train --model attention_dropout=0
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from higround.data.batch import ParagraphBatch
from higround.data.batching import ParagraphItem, collate_paragraphs
from higround.losses import HSCNetLoss
from higround.models import HSCNet, HSCNetConfig, count_parameters

WORD_DIM = 300  # GloVe 300-d, as the paper
VOCAB = 10_000
WORDS_PER_SENTENCE = 14  # ActivityNet-Captions sentences average ~14 tokens


@dataclass(frozen=True)
class Point:
    """One measurement: a model recipe at one input shape."""

    name: str
    video_dim: int
    layers: int
    clips: int
    sentences: int
    batch: int


SHAPES = {
    "activitynet": Point("ActivityNet (paper)", 500, 1, 256, 4, 32),
    "tacos": Point("TACoS (paper)", 4096, 3, 512, 6, 16),
}


def paragraph_batch(point: Point, batch: int, seed: int = 0) -> ParagraphBatch:
    """``batch`` random paragraphs of ``point``'s shape (clips, sentences of 14 words)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for b in range(batch):
        starts = torch.sort(torch.rand(point.sentences, generator=g) * 0.7).values
        spans = torch.stack([starts, (starts + 0.1 + 0.2 * torch.rand(point.sentences, generator=g))], -1)
        items.append(
            ParagraphItem(
                video=torch.randn(point.clips, point.video_dim, generator=g),
                words=torch.randint(2, VOCAB, (point.sentences * WORDS_PER_SENTENCE,), generator=g),
                sentence_length=torch.full((point.sentences,), WORDS_PER_SENTENCE),
                spans=spans.clamp(max=1.0),
                duration=120.0,
                video_id=f"v{b}",
                paragraph_index=0,
                sentence_index=torch.arange(point.sentences),
            )
        )
    return collate_paragraphs(items)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build_model(point: Point, overrides: dict[str, Any] | None = None) -> tuple[HSCNet, HSCNetConfig]:
    """The model of ``point``'s recipe (seed 0), with ``overrides`` of :class:`HSCNetConfig` fields."""
    torch.manual_seed(0)
    config = HSCNetConfig(
        video_dim=point.video_dim,
        word_dim=WORD_DIM,
        num_clips=point.clips,
        word_layers=point.layers,
        sentence_layers=point.layers,
        paragraph_layers=point.layers,
        **(overrides or {}),
    )
    return HSCNet(config, torch.randn(VOCAB, WORD_DIM)), config


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (values read as YAML: ``0``, ``0.1``, ``false``) into a dict."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--model takes KEY=VALUE pairs, got {pair!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def measure(
    point: Point,
    device_name: str,
    precision: str,
    steps: int,
    mode: str,
    overrides: dict[str, Any] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Time ``steps`` training steps (``mode="train"``) or single-paragraph inferences."""
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    model, config = build_model(point, overrides)
    model = model.to(device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    batch = paragraph_batch(point, point.batch if mode == "train" else 1).to(device)
    times: list[float] = []
    if mode == "train":
        criterion = HSCNetLoss(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        model.train()
        for _ in range(steps + 2):  # two warm-up steps
            _sync(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = criterion(model(batch), batch)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(device)
            times.append(time.perf_counter() - start)
    else:
        model.eval()
        with torch.inference_mode():
            for _ in range(steps + 2):
                _sync(device)
                start = time.perf_counter()
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    model(batch)
                _sync(device)
                times.append(time.perf_counter() - start)
    step = statistics.median(times[2:])
    return {
        "point": point.__dict__,
        "mode": mode,
        "parameters": count_parameters(model),
        "step_ms": 1000 * step,
        "paragraphs_per_s": (point.batch if mode == "train" else 1) / step,
        "peak_mib": _peak_mib(device),
    }


def _worker(args: tuple[Any, ...]) -> dict[str, Any]:
    return measure(*args)


def run_isolated(
    point: Point,
    device: str,
    precision: str,
    steps: int,
    mode: str,
    overrides: dict[str, Any] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """:func:`measure` with this point's own peak memory: on a GPU after resetting the allocator's
    peak, on the CPU in a fresh process (peak RSS cannot be reset)."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return measure(point, device, precision, steps, mode, overrides, threads)
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_worker, ((point, device, precision, steps, mode, overrides, threads),))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _cell(result: dict[str, Any] | None, key: str, spec: str) -> str:
    return "-" if result is None else format(result[key], spec)


def main() -> None:
    """Parse arguments, run the chosen parts, print tables, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--parts", nargs="+", default=["shapes", "clips", "sentences"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per point (median reported)")
    parser.add_argument("--clips", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--sentences", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--sweep-batch", type=int, default=4, help="paragraphs per training step in sweeps")
    parser.add_argument("--modes", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--model",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="HSCNetConfig overrides, e.g. attention_dropout=0",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    overrides = parse_overrides(args.model)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch_threads = torch.get_num_threads()
    machine = f"{platform.processor() or platform.machine()}, {torch_threads} torch threads"
    if args.device.startswith("cuda"):
        machine = torch.cuda.get_device_name()
    settings = f"{args.precision}, model {overrides}" if overrides else args.precision
    print(f"# HSCNet speed on {args.device} ({machine}), {settings}, torch {torch.__version__}\n")
    results: list[dict[str, Any]] = []

    def both(point: Point) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        done = {
            mode: run_isolated(point, args.device, args.precision, args.steps, mode, overrides, args.threads)
            for mode in args.modes
        }
        results.extend(done.values())
        return done.get("train"), done.get("infer")

    if "shapes" in args.parts:
        rows = []
        for point in SHAPES.values():
            train, infer = both(point)
            rows.append(
                [
                    point.name,
                    f"{point.clips} x {point.video_dim}",
                    str(point.batch),
                    _cell(train or infer, "parameters", ","),
                    _cell(train, "paragraphs_per_s", ".1f"),
                    _cell(train, "peak_mib", ".0f"),
                    _cell(infer, "step_ms", ".1f"),
                ]
            )
        header = ["recipe", "clips x dim", "batch", "params", "train par/s", "train peak MiB", "infer ms/par"]
        print(_table(header, rows) + "\n")
    sweeps = [
        ("clips", "N^V", [Point(f"N^V={n}", 500, 1, n, 4, args.sweep_batch) for n in args.clips]),
        (
            "sentences",
            "sentences",
            [Point(f"S={s}", 500, 1, 256, s, args.sweep_batch) for s in args.sentences],
        ),
    ]
    for part, label, points in sweeps:
        if part not in args.parts:
            continue
        rows = []
        for point in points:
            train, infer = both(point)
            value = point.clips if part == "clips" else point.sentences
            rows.append(
                [
                    str(value),
                    _cell(train, "step_ms", ".0f"),
                    _cell(train, "peak_mib", ".0f"),
                    _cell(infer, "step_ms", ".1f"),
                    _cell(infer, "peak_mib", ".0f"),
                ]
            )
        header = [
            label,
            f"train ms/step (batch {args.sweep_batch})",
            "train peak MiB",
            "infer ms/par",
            "infer peak MiB",
        ]
        print(_table(header, rows) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "device": args.device,
            "machine": machine,
            "precision": args.precision,
            "torch": torch.__version__,
            "model": overrides,
        }
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
