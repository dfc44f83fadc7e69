"""`engine: auto` picks the engine this machine runs fastest (benchmarks/RESULTS.md, "On a Xeon
with AMX"): hf in bfloat16 on a CPU with AMX, ct2 in float32 on other CPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lidr.engines as engines
from lidr.config import GenerationConfig


@pytest.mark.skipif(torch.cuda.is_available(), reason="the choice on a CPU-only machine")
@pytest.mark.parametrize("amx, settings, expected", [
    (True, {}, "hf"),
    (False, {}, "ct2"),
    (True, {"dtype": "bfloat16"}, "hf"),
    (True, {"dtype": "float32"}, "ct2"),  # level in float32: the engine whose text is hf's in float32
    (True, {"ct2": {"compute_type": "int8"}}, "ct2"),  # a ct2 setting asks for ct2
    (True, {"engine": "ct2"}, "ct2"),
    (False, {"engine": "hf"}, "hf"),
])
def test_auto_on_a_cpu(monkeypatch, amx, settings, expected):
    monkeypatch.setattr(engines, "cpu_has_amx", lambda: amx)
    assert engines.resolve_engine(GenerationConfig.model_validate(settings)) == expected


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads Linux's CPU flags")
def test_amx_is_read_from_the_cpu():
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    assert engines.cpu_has_amx() == ("amx_tile" in flags and "amx_bf16" in flags)
