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
    return _engine_module(resolve_engine(gen.engine)).build(gen, model_path, batch_size=batch_size, seed=seed,
                                                             log=log)


def resolve_engine(kind: str) -> str:
    """The engine `auto` stands for here: on a GPU vLLM when installed, else hf; on a CPU-only
    machine ct2 (in float32 its greedy text equals hf's, 2-3x faster), else hf."""
    if kind != "auto":
        return kind
    import importlib.util

    import torch

    if torch.cuda.is_available():
        return "vllm" if importlib.util.find_spec("vllm") else "hf"
    return "ct2" if importlib.util.find_spec("ctranslate2") else "hf"


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


__all__ = ["ChatRequest", "Completion", "Engine", "Sampling", "check_engine", "engine_from_config",
           "resolve_engine"]
