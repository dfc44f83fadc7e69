"""Text generation engines behind one interface (see `base.py`)."""

from __future__ import annotations

from lidr.engines.base import ChatRequest, Completion, Engine, Sampling


def make_engine(kind: str, model_path: str, *, dtype: str = "auto", device: str = "auto", batch_size: int = 16,
                **options) -> Engine:
    """`hf`: a local model through transformers (`options`: evict_every). `ct2`: CTranslate2
    (`options`: compute_type, intra_threads). `vllm`: vLLM's offline engine on CUDA GPUs;
    `options` carry tensor_parallel_size, gpu_memory_utilization, seed, ... (see engines/vllm.py).
    `openai`: a model behind an OpenAI-compatible server; `options` carry base_url, api_key_env,
    concurrency, ... (see engines/openai.py)."""
    if kind == "hf":
        from lidr.engines.hf import HFEngine

        return HFEngine(model_path, dtype=dtype, device=device, batch_size=batch_size, **options)
    if kind == "ct2":
        from lidr.engines.ct2 import CT2Engine

        return CT2Engine(model_path, device=device, batch_size=batch_size, **options)
    if kind == "vllm":
        from lidr.engines.vllm import VLLMEngine

        return VLLMEngine(model_path, dtype=dtype, **options)
    if kind == "openai":
        from lidr.engines.openai import OpenAIEngine

        return OpenAIEngine(options.pop("base_url"), model_path, **options)
    raise ValueError(f"unknown engine {kind!r} (available: hf, ct2, openai, vllm)")


__all__ = ["ChatRequest", "Completion", "Engine", "Sampling", "make_engine"]
