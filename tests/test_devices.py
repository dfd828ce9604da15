"""higround.devices: the BF16 instruction probe reads /proc/cpuinfo's flags (x86) and Features (Arm)."""

from __future__ import annotations

import platform

import pytest
import torch

from higround import devices
from higround.devices import cpu_bf16_instructions, cpu_has_bf16

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu vme sse sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16 clzero
bugs\t\t: sysret_ss_attrs
"""
SAPPHIRE_RAPIDS = "flags\t: avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN3 = "processor\t: 0\nflags\t\t: fpu sse avx avx2 fma bmi2\n\nprocessor\t: 1\nflags\t\t: fpu sse avx avx2\n"
GRAVITON3 = (
    "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha3 sve i8mm bf16 rng\nCPU implementer\t: 0x41\n"
)


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (ZEN4, ("AVX512-BF16",)),
        (SAPPHIRE_RAPIDS, ("AVX512-BF16", "AMX-BF16")),
        (ZEN3, ()),
        (GRAVITON3, ("Arm BF16",)),
        ("", ()),
    ],
)
def test_bf16_instruction_sets_are_read_from_the_cpuinfo_flags(
    cpuinfo: str, expected: tuple[str, ...]
) -> None:
    assert cpu_bf16_instructions(cpuinfo) == expected
    assert cpu_has_bf16(cpuinfo) is bool(expected)


def test_a_flag_only_counts_on_a_flags_line_and_as_a_whole_word() -> None:
    assert cpu_bf16_instructions("model name\t: avx512_bf16 emulator\nflags\t: avx512f\n") == ()
    assert cpu_bf16_instructions("flags\t: avx512_bf16x amx_bf16_lite\n") == ()


def test_without_cpuinfo_torch_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "CPUINFO", devices.Path("/nonexistent/cpuinfo"))
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_bf16_instructions() == ("AVX512-BF16",)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert not cpu_has_bf16()
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert cpu_bf16_instructions() == ()  # a torch without the probe: nothing known, nothing claimed


@pytest.mark.skipif(
    not devices.CPUINFO.is_file() or platform.machine() not in ("x86_64", "AMD64"), reason="x86 Linux"
)
def test_this_machine_agrees_with_torchs_probe() -> None:
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is None:
        pytest.skip("this torch has no AVX512-BF16 probe")
    assert ("AVX512-BF16" in cpu_bf16_instructions()) == probe()
