"""What the cores can do in float32: matmul GFLOP/s with 1 and with all threads, for a large square
product and for the shapes of one decode step of SmolLM2-135M at batch 64. It bounds what any
CPU engine can reach here (issue: a CPU engine 2x the hf engine), and says whether the cores
scale (two vCPUs on one physical core would not).

    python benchmarks/bench_cores.py      # about a minute; benchmarks/results/cores.json
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from common import machine, save

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")

# SmolLM2-135M: hidden 576, 9 query heads and 3 key/value heads of 64, MLP 1536, vocabulary 49,152.
DECODE_SHAPES = {"q, o projections": (576, 576), "k, v projections": (576, 192), "mlp gate, up": (576, 1536),
                 "mlp down": (1536, 576), "lm head": (576, 49152)}
BATCH = 64


def gflops(m: int, k: int, n: int, seconds: float = 2.0) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9


def measure(threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    out = {"square 2048": gflops(2048, 2048, 2048)}
    for name, (k, n) in DECODE_SHAPES.items():
        out[f"decode {name} ({BATCH}x{k}x{n})"] = gflops(BATCH, k, n, seconds=1.0)
    return out


def main() -> None:
    info = machine()
    words = set(Path("/proc/cpuinfo").read_text().split())
    info["flags"] = [f for f in FLAGS if f in words]
    print(f"CPU: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['flags'])}; torch {info['torch']}, float32\n")
    cores = os.cpu_count() or 1
    runs = {t: measure(t) for t in sorted({1, cores})}
    print("| product | " + " | ".join(f"{t} thread(s) GFLOP/s" for t in runs) + " | scaling |")
    print("|---|" + "---|" * (len(runs) + 1))
    for name in runs[1]:
        values = [runs[t][name] for t in runs]
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {values[-1] / values[0]:.2f}x |")
    print(f"\nwritten to {save('cores', {'machine': info, 'gflops_by_threads': runs})}")


if __name__ == "__main__":
    main()
