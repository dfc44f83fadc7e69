"""Engines built from a run config's `generation:` section (and an evaluation task's judge).

The pipeline, the evaluation and `lidr eval` / `lidr translate-prompts` all get their
engine here, so `engine: vllm` or `engine: openai` in a config changes every stage that
generates text and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from lidr.config import GenerationConfig, OpenAIOptions
from lidr.engines import Engine, make_engine


def engine_from_config(gen: GenerationConfig, model_path: str, *, batch_size: int | None = None,
                       seed: int = 0, log: Callable[[str], None] = print) -> Engine:
    """An engine running `model_path` as `gen` says; `batch_size` overrides gen.batch_size (hf, ct2)."""
    kind = resolve_engine(gen.engine)
    if kind == "ct2":
        return make_engine("ct2", model_path, device=gen.device, batch_size=batch_size or gen.batch_size,
                           log=log, **gen.ct2.model_dump())
    if kind == "hf":
        return make_engine("hf", model_path, dtype=gen.dtype, device=gen.device,
                           batch_size=batch_size or gen.batch_size, evict_every=gen.evict_every)
    if kind == "vllm":
        return make_engine("vllm", model_path, dtype=gen.dtype, seed=seed, **gen.vllm.model_dump())
    return openai_engine(gen.openai, model_path)


def openai_engine(opts: OpenAIOptions, model_path: str) -> Engine:
    """The OpenAI-compatible engine for `model_path`, on a server started for it when
    `opts.serve_command` is set. The tokenizer (for prefills sent to /v1/completions) is
    the model's own when `model_path` is a local directory."""
    from lidr.engines.openai import OpenAIEngine

    tokenizer = model_path if Path(model_path).is_dir() else None
    options = dict(model=opts.model_name or model_path, api_key_env=opts.api_key_env,
                   concurrency=opts.concurrency, timeout=opts.timeout, max_retries=opts.max_retries,
                   backoff=opts.backoff, extra_body=opts.extra_body, tokenizer_path=tokenizer,
                   prefill_via=opts.prefill_via if tokenizer or opts.prefill_via == "chat" else "chat")
    if opts.serve_command is None:
        return OpenAIEngine(opts.url(), **options)
    from lidr.engines.server import ServedEngine, ServerProcess, free_port

    port = free_port()
    server = ServerProcess(opts.serve_command, model_path, port, opts.serve_start_timeout)
    api_key = os.environ.get(opts.api_key_env) if opts.api_key_env else None
    server.start(opts.url(port) + "/models", api_key)  # the readiness probe carries the key too
    try:
        return ServedEngine(server, OpenAIEngine(opts.url(port), **options))
    except BaseException:
        server.stop()
        raise


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
    """Fail before a run writes anything when the configured engine cannot run here."""
    if gen.engine == "ct2":
        from lidr.engines.ct2 import require_ctranslate2

        require_ctranslate2()
    if gen.engine == "vllm":
        from lidr.engines.vllm import require_vllm

        require_vllm()
