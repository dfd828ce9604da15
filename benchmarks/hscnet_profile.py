"""HSCNet profile: where a training step (or an inference) spends its CPU time, by op and by module.

One training step is forward, the total loss of eq. 11, backward and an Adam step, at the shapes of
``benchmarks/hscnet_speed.py`` (ActivityNet recipe by default: N^V = 256 clips of 500-d C3D, batch
32, GloVe 300-d words, 4 sentences of 14 words). ``--inference`` profiles one eval-mode batch
(``--batch 1`` by default) under ``inference_mode`` instead. Prints markdown tables:

* the top ops by self CPU time (``torch.profiler``);
* the top modules by self CPU time: every op is charged to the innermost module whose forward ran
  it; a backward op to the module whose forward op created its autograd node (matched by the
  profiler's sequence numbers), so a module's row is its forward + backward cost. Python time spent
  in a module's ``forward`` outside any op is that module's too. Rows outside every module: the
  loss, the optimizer, gradient accumulation;
* the cost by block (modules cut at ``--depth`` name parts, children included) with the FLOPs each
  block ran (``torch.utils.flop_counter.FlopCounterMode``, with the CPU flash-attention kernels
  registered, which torch's table lacks) and its GFLOP/s;
* FLOPs per paragraph, achieved GFLOP/s of the unprofiled step, and the machine's matmul peak at
  the same threads and precision (a 2048^3 matmul), i.e. the utilisation.

FLOPs are FlopCounterMode's (matrix products and attention). Two caveats: the flash kernel's
backward recomputes the attention scores, which FlopCounterMode counts (a training step of the
ActivityNet recipe: 13.45 GFLOP per paragraph with it, 13.16 with the reference kernel: same model,
same useful work); and in eval mode FlopCounterMode sees the decoder LSTMs' products, which the
profiler's oneDNN LSTM kernel does not report, so the block rows then sum to slightly less.

Timings are medians of ``--steps`` unprofiled steps after two warm-ups; the profiled step is one
more (profiling adds overhead; shares, not absolute times, are what its tables are for). Run::

    python benchmarks/hscnet_profile.py --threads 1 --steps 3
    python benchmarks/hscnet_profile.py --threads 1 --precision bf16
    python benchmarks/hscnet_profile.py --threads 1 --inference --clips 4096 --sentences 20
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from higround.losses import HSCNetLoss


def _load_speed() -> Any:
    """``benchmarks/hscnet_speed.py`` (benchmarks are scripts, not a package): its shapes and model."""
    name = "hscnet_speed_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("hscnet_speed.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


speed = _load_speed()

MODULE = "module::"
BACKWARD = "autograd::engine::evaluate_function: "
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def _cpu_flash_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kw: Any) -> int:
    return int(sdpa_flop_count(query, key, value))


def _cpu_flash_backward_flops(
    grad: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kw: Any
) -> int:
    return int(sdpa_backward_flop_count(grad, query, key, value))


# torch's FlopCounterMode knows the CUDA attention kernels only: the CPU flash kernel (taken without
# attention dropout) would count 0 FLOPs.
CPU_FLASH_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flops,
}


@dataclass
class Profile:
    """What one profiled run measured (times in ms, FLOPs per run of the step)."""

    step_ms: float
    flops: int
    paragraphs: int
    ops: list[tuple[str, float, int]]  # (op, self ms, calls)
    modules: list[tuple[str, str, float, float]]  # (module, class, forward self ms, backward self ms)
    blocks: list[tuple[str, float, int]]  # (block, ms incl. children, FLOPs)
    total_ms: float  # self CPU time of every profiled event: the profiled step's time
    profiled_flops: int = 0  # the FLOPs of the blocks' rows together (should equal ``flops``)


@contextlib.contextmanager
def module_regions(model: nn.Module, prefix: str = "") -> Iterator[dict[str, str]]:
    """Wrap every submodule's forward in a ``record_function("module::<name>")`` region.

    Yields ``{name: class name}``; the root is named ``prefix`` or its class name.
    """
    classes: dict[str, str] = {}
    handles = []
    for name, module in model.named_modules():
        full = ".".join(p for p in (prefix, name) if p) or type(module).__name__
        classes[full] = type(module).__name__
        stack: list[Any] = []

        def enter(module: nn.Module, args: Any, full: str = full, stack: list[Any] = stack) -> None:
            region = record_function(MODULE + full)
            region.__enter__()
            stack.append(region)

        def leave(module: nn.Module, args: Any, output: Any, stack: list[Any] = stack) -> None:
            stack.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        yield classes
    finally:
        for handle in handles:
            handle.remove()


# Ops whose FLOPs the table counts, as FlopCounterMode does: matrix products (the profiler's own
# estimate) and the CPU flash-attention kernels (from their input shapes).
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
FLASH_OPS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": lambda s: sdpa_flop_count(s[0], s[1], s[2]),
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward": lambda s: sdpa_backward_flop_count(
        s[0], s[1], s[2], s[3]
    ),
}


def event_flops(event: Any) -> int:
    """FLOPs of one profiled op (0 for ops FlopCounterMode does not count either)."""
    if event.name in MATMUL_OPS:
        return int(event.flops or 0)
    if event.name in FLASH_OPS and event.input_shapes:
        return int(FLASH_OPS[event.name](event.input_shapes))
    return 0


@dataclass
class Attribution:
    """Self CPU ms and FLOPs per ``(module or region, "fwd"/"bwd")``, and ``(ms, calls)`` per op."""

    ms: dict[tuple[str, str], float]
    flops: dict[tuple[str, str], int]
    ops: dict[str, tuple[float, int]]


def attribute(events: Any) -> Attribution:
    """Charge every event of ``events`` (``prof.events()``) to a module or region.

    A forward op is charged to its innermost ``module::`` region; a backward op to the module of the
    forward op that shares its autograd node's sequence number (per thread); anything else to the
    outermost plain region around it (``loss``, ``optimizer``) or ``(other)``.
    """

    def owner(event: Any) -> tuple[str, Any]:
        outer = "(other)"
        node = event
        while node is not None:
            if node.name.startswith(MODULE):
                return node.name[len(MODULE) :], None
            if node.name.startswith(BACKWARD):
                return "", node
            if not node.name.startswith(("aten::", "autograd::", "torch::")) and "Backward" not in node.name:
                outer = node.name
            node = node.cpu_parent
        return outer, None

    owners = {}
    forward_module: dict[tuple[int, int], str] = {}
    for event in events:
        name, backward = owner(event)
        owners[id(event)] = (name, backward)
        if backward is None and event.sequence_nr >= 0 and not event.name.startswith(MODULE):
            forward_module.setdefault((event.thread, event.sequence_nr), name)
    ms: dict[tuple[str, str], float] = defaultdict(float)
    flops: dict[tuple[str, str], int] = defaultdict(int)
    ops: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for event in events:
        name, backward = owners[id(event)]
        key = (name, "fwd")
        if backward is not None:
            label = backward.name[len(BACKWARD) :]
            default = "(gradient accumulation)" if "AccumulateGrad" in label else "(backward, unmatched)"
            key = (forward_module.get((backward.fwd_thread, backward.sequence_nr), default), "bwd")
        ms[key] += event.self_cpu_time_total / 1000
        flops[key] += event_flops(event)
        if not event.name.startswith(MODULE) and not event.name.startswith(BACKWARD):
            ops[event.name][0] += event.self_cpu_time_total / 1000
            ops[event.name][1] += 1
    return Attribution(dict(ms), dict(flops), {k: (v[0], int(v[1])) for k, v in ops.items()})


def _block(name: str, depth: int, containers: set[str]) -> str:
    """``name`` cut to ``depth`` parts, one more part while that names a container (``ModuleList``),
    whose forward never runs."""
    parts = name.split(".")
    cut = min(depth, len(parts))
    while cut < len(parts) and ".".join(parts[:cut]) in containers:
        cut += 1
    return ".".join(parts[:cut])


def run_profile(
    point: Any,
    precision: str = "fp32",
    steps: int = 3,
    inference: bool = False,
    depth: int = 3,
    overrides: dict[str, Any] | None = None,
) -> Profile:
    """Profile ``point``'s training step (or inference with ``inference``) on the CPU.

    Args:
        point: a ``hscnet_speed.Point`` (shapes and batch).
        precision: ``fp32`` or ``bf16`` (autocast).
        steps: unprofiled timed steps (median reported), after two warm-ups.
        inference: profile an eval-mode forward under ``inference_mode`` instead of a training step.
        depth: name parts kept for the block table.
        overrides: :class:`~higround.models.HSCNetConfig` fields.

    Returns:
        The tables' rows and totals.

    Raises:
        ValueError: ``steps`` below 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    model, config = speed.build_model(point, overrides)
    batch = speed.paragraph_batch(point, point.batch)
    dtype = DTYPES[precision]
    criterion = HSCNetLoss(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train(not inference)

    def step() -> None:
        if inference:
            with (
                torch.inference_mode(),
                torch.autocast("cpu", dtype=dtype, enabled=dtype is not None),
                record_function("forward"),
            ):
                model(batch)
            return
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            with record_function("forward"):
                output = model(batch)
            with record_function("loss"):
                loss = criterion(output, batch)["total"]
        with record_function("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("optimizer"):
            optimizer.step()

    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    step_ms = 1000 * statistics.median(times[2:])

    with FlopCounterMode(display=False, custom_mapping=CPU_FLASH_FLOPS) as counter:
        step()

    with (
        module_regions(model) as classes,
        module_regions(criterion, "loss"),
        profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as prof,
    ):
        step()
    events = prof.events()
    found = attribute(events)
    total_ms = sum(e.self_cpu_time_total for e in events) / 1000

    modules: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (name, phase), ms in found.ms.items():
        modules[name][0 if phase == "fwd" else 1] += ms
    module_rows = sorted(
        ((n, classes.get(n, ""), f, b) for n, (f, b) in modules.items()), key=lambda r: -(r[2] + r[3])
    )
    containers = {n for n, c in classes.items() if c in ("ModuleList", "ModuleDict")}
    block_ms: dict[str, float] = defaultdict(float)
    block_flops: dict[str, int] = defaultdict(int)
    for (name, _), ms in found.ms.items():
        block_ms[_block(name, depth, containers)] += ms
        block_flops[_block(name, depth, containers)] += found.flops.get((name, _), 0)
    blocks = sorted(((n, ms, block_flops[n]) for n, ms in block_ms.items()), key=lambda r: -r[1])
    ops = sorted(((n, ms, calls) for n, (ms, calls) in found.ops.items()), key=lambda r: -r[1])
    return Profile(
        step_ms=step_ms,
        flops=counter.get_total_flops(),
        profiled_flops=sum(found.flops.values()),
        paragraphs=point.batch,
        ops=ops,
        modules=module_rows,
        blocks=blocks,
        total_ms=total_ms,
    )


def matmul_peak(precision: str, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a ``size``^3 matmul at this process's threads and ``precision`` (best of ``repeats``)."""
    dtype = DTYPES[precision] or torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def report(
    result: Profile, top: int, peak: float | None = None, write: Callable[[str], None] = print
) -> None:
    """Print ``result`` as markdown tables (``top`` rows each)."""
    gflop = result.flops / 1e9
    achieved = gflop / (result.step_ms / 1000)
    lines = [
        f"step {result.step_ms:.1f} ms (median, unprofiled) for {result.paragraphs} paragraph(s): "
        f"{result.paragraphs / (result.step_ms / 1000):.2f} paragraphs/s; "
        f"{gflop / result.paragraphs:.3f} GFLOP per paragraph, {achieved:.1f} GFLOP/s"
    ]
    if peak:
        lines.append(
            f"matmul peak {peak:.1f} GFLOP/s at these threads and precision: {achieved / peak:.0%} of it"
        )
    lines.append(
        f"profiled step: {result.total_ms:.1f} ms of self CPU time (profiler overhead included); "
        f"{result.profiled_flops / 1e9:.2f} GFLOP charged to its rows (FlopCounterMode: {gflop:.2f})"
    )
    write("\n".join(lines) + "\n")
    share = 100 / result.total_ms
    write(
        _table(
            ["op", "self ms", "%", "calls"],
            [[f"`{n}`", f"{ms:.1f}", f"{ms * share:.1f}", str(c)] for n, ms, c in result.ops[:top]],
        )
        + "\n"
    )
    write(
        _table(
            ["module (self: ops not in a child module)", "class", "forward/other ms", "backward ms", "%"],
            [
                [f"`{n}`", c, f"{f:.1f}", f"{b:.1f}", f"{(f + b) * share:.1f}"]
                for n, c, f, b in result.modules[:top]
            ],
        )
        + "\n"
    )
    rows = []
    for name, ms, flops in result.blocks[:top]:
        rate = f"{flops / 1e9 / (ms / 1000):.1f}" if flops and ms else "-"
        rows.append([f"`{name}`", f"{ms:.1f}", f"{ms * share:.1f}", f"{flops / 1e9:.3f}", rate])
    write(_table(["block (children included)", "ms", "%", "GFLOP", "GFLOP/s (profiled)"], rows) + "\n")


def main() -> None:
    """Parse arguments, profile, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="unprofiled timed steps (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--precision", default="fp32", choices=list(DTYPES))
    parser.add_argument("--clips", type=int, default=256, help="N^V")
    parser.add_argument("--sentences", type=int, default=4)
    parser.add_argument("--batch", type=int, help="paragraphs (default: 32 training, 1 inference)")
    parser.add_argument("--video-dim", type=int, default=500)
    parser.add_argument("--inference", action="store_true", help="profile an eval-mode forward instead")
    parser.add_argument("--top", type=int, default=20, help="rows per table")
    parser.add_argument("--depth", type=int, default=3, help="module name parts per block")
    parser.add_argument("--no-peak", action="store_true", help="skip the matmul peak measurement")
    parser.add_argument("--model", nargs="+", default=[], metavar="KEY=VALUE", help="HSCNetConfig overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = args.batch or (1 if args.inference else 32)
    point = speed.Point("profile", args.video_dim, 1, args.clips, args.sentences, batch)
    overrides = speed.parse_overrides(args.model)
    what = "inference" if args.inference else "training step"
    print(
        f"# HSCNet {what}: N^V {args.clips} x {args.video_dim}, batch {batch}, {args.sentences} sentences, "
        f"{args.precision}, {args.threads} thread(s), torch {torch.__version__}"
        + (f", model {overrides}" if overrides else "")
        + "\n"
    )
    result = run_profile(point, args.precision, args.steps, args.inference, args.depth, overrides)
    report(result, args.top, None if args.no_peak else matmul_peak(args.precision))


if __name__ == "__main__":
    main()
