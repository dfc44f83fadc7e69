"""Text generation engines behind one interface (see `base.py`), built from a run config.

Every engine is a module `lidr.engines.<name>` registered in `lidr.config.ENGINES`. It has
`build(gen, model_path, *, batch_size, seed, log)`, which makes the engine from the config's
`generation:` section, and, when it needs a package that may be missing, `check()`. So a new
engine is its module plus its line in ENGINES.

The pipeline, the evaluation and `lidr eval` / `lidr translate-prompts` all get their engine
here, so `engine: vllm` or `engine: openai` in a config changes every stage that generates
text and nothing else.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable

from lidr.config import ENGINES, GenerationConfig
from lidr.engines.base import ChatRequest, Completion, Engine, Sampling


def engine_from_config(gen: GenerationConfig, model_path: str, *, batch_size: int | None = None,
                       seed: int = 0, log: Callable[[str], None] = print) -> Engine:
    """An engine running `model_path` as `gen` says; `batch_size` overrides gen.batch_size (hf, ct2)."""
    return _engine_module(resolve_engine(gen)).build(gen, model_path, batch_size=batch_size, seed=seed,
                                                             log=log)


def resolve_engine(gen: GenerationConfig) -> str:
    """The engine `gen.engine` stands for here; `auto` (benchmarks/RESULTS.md, "On a Xeon with AMX"):
    - on a GPU, vllm when installed, else hf;
    - on a CPU with AMX (bfloat16 matrix units), hf: in bfloat16, which CTranslate2 lacks on a
      CPU, it was 1.8-2.6x CTranslate2's float32 with accuracy and off-target within
      float32's intervals; in float32 (`dtype: float32`) the two are level, so ct2 (next line);
    - on other CPUs ct2 (in float32 its greedy text equals hf's, 1.6-1.8x faster on generation
      and translation), else hf.
    A ct2 compute type other than auto asks for ct2."""
    if gen.engine != "auto":
        return gen.engine
    import importlib.util

    import torch

    if torch.cuda.is_available():
        return "vllm" if importlib.util.find_spec("vllm") else "hf"
    if gen.ct2.compute_type == "auto" and gen.dtype in ("auto", "bfloat16") and cpu_has_amx():
        return "hf"
    return "ct2" if importlib.util.find_spec("ctranslate2") else "hf"


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX), where the hf engine's
    default dtype is bfloat16."""
    import torch

    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return bool(has_amx()) and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def check_engine(gen: GenerationConfig) -> None:
    """Fail before a run writes anything when the configured engine cannot run here (`auto`
    picks one that can)."""
    if gen.engine == "auto":
        return
    check = getattr(_engine_module(gen.engine), "check", None)
    if check is not None:
        check()


def _engine_module(name: str) -> ModuleType:
    # Only registered names: an engine name never imports another module of this package.
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r} (available: {', '.join(ENGINES)})")
    return importlib.import_module(f"lidr.engines.{name}")


__all__ = ["ChatRequest", "Completion", "Engine", "Sampling", "check_engine", "cpu_has_amx", "engine_from_config",
           "resolve_engine"]
