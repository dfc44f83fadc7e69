"""The `lidr` command keeps torch's OpenMP threads from spinning long (lidr/cli.py): beside other
work on 2 cores the default spin made the hf engine 4-8x slower (benchmarks/RESULTS.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = ("import os, sys, lidr.cli; "
         "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")


def probe(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=base | env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_command_sets_a_short_spin_before_torch_loads() -> None:
    # libgomp reads the variable once, when torch loads: it must be set and torch not yet loaded.
    assert probe() == ["10000", "None", "False"]


@pytest.mark.parametrize("env, expected", [
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ["None", "ACTIVE"]),
    ({"GOMP_SPINCOUNT": "5"}, ["5", "None"]),
])
def test_a_users_own_setting_is_kept(env: dict[str, str], expected: list[str]) -> None:
    # GOMP_SPINCOUNT overrides OMP_WAIT_POLICY in libgomp, so a user's policy means no spin count of ours.
    assert probe(**env)[:2] == expected
