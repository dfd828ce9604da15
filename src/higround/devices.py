"""The one rule that turns a ``--device`` string into a torch device (models and backbones alike), and
what the CPU can do natively (BF16 instructions), for rules that choose a precision per device."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from higround.errors import ConfigError


def resolve_device(device: str) -> torch.device:
    """``auto``: ``cuda:LOCAL_RANK`` under torchrun, else ``cuda`` when available, else CPU; any other
    name as given.

    Raises:
        ConfigError: a name torch does not know, or a CUDA device asked for on a machine without CUDA.
    """
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    try:
        resolved = torch.device(device)
    except RuntimeError:  # torch lists every backend it was built with: name the usual ones instead
        raise ConfigError(
            f"device {device!r} is not a device name (auto, cpu, cuda, cuda:1, mps, ...)"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available")
    return resolved


# /proc/cpuinfo flags of CPUs that execute BF16 arithmetic natively, and what each names.
BF16_CPU_FLAGS = {
    "avx512_bf16": "AVX512-BF16",  # x86: AMD Zen 4+, Intel Cooper Lake / Sapphire Rapids+
    "amx_bf16": "AMX-BF16",  # x86: Intel Sapphire Rapids+ (tile matrix multiply)
    "bf16": "Arm BF16",  # Armv8.6-A BF16 (the "Features" line of an Arm /proc/cpuinfo)
}
CPUINFO = Path("/proc/cpuinfo")


def cpu_bf16_instructions(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The BF16 instruction sets this machine's CPU has (``()``: none found), e.g. ``("AVX512-BF16",)``.

    Where BF16 instructions exist, oneDNN's bf16 matmuls and convolutions (what CPU bf16 autocast
    runs) use them; without, bf16 is emulated and usually slower than fp32.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo``; by default it is read when it exists. Its ``flags``
            (x86) or ``Features`` (Arm) line is searched for :data:`BF16_CPU_FLAGS`.

    Returns:
        The names of the sets found, in :data:`BF16_CPU_FLAGS` order. Without ``/proc/cpuinfo``
        (macOS, Windows) torch's own CPU probe is asked about AVX512-BF16 and AMX instead.
    """
    if cpuinfo is None and CPUINFO.is_file():
        cpuinfo = CPUINFO.read_text(errors="replace")
    if cpuinfo is None:
        return _torch_bf16_probe()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return tuple(name for flag, name in BF16_CPU_FLAGS.items() if flag in flags)


def _torch_bf16_probe() -> tuple[str, ...]:
    """AVX512-BF16 / AMX as torch's CPU probe (the cpuinfo library) reports them; ``()`` if it cannot."""
    found = []
    for name, probe in (("AVX512-BF16", "_is_avx512_bf16_supported"), ("AMX-BF16", "_is_amx_tile_supported")):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            found.append(name)
    return tuple(found)


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU executes BF16 arithmetic natively (see :func:`cpu_bf16_instructions`)."""
    return bool(cpu_bf16_instructions(cpuinfo))
