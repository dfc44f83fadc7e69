"""Shared by the benchmark scripts: the machine, medians, the bundled model and prompts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import torch
    import transformers
    import trl

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    return {
        "date": date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
        "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=Path(__file__).parent).stdout.strip(),
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(values: list[float]) -> float:
    return statistics.median(values)


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def demo_prompts(per_language: int, languages=("en", "es", "fr", "de"), block: int = 1):
    """The bundled demo prompts (what `lidr demo` trains on), aligned across languages."""
    from lidr.config import PromptSource
    from lidr.data.prompts import load_aligned

    src = PromptSource(path=f"bundled:demo/iter_{block}/{{lang}}.jsonl", limit=per_language)
    return load_aligned(src, list(languages), None)
