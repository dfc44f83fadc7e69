"""Text generation engines behind one interface (see `base.py`)."""

from __future__ import annotations

from lidr.engines.base import ChatRequest, Completion, Engine, Sampling


def make_engine(kind: str, model_path: str, *, dtype: str = "auto", device: str = "auto", batch_size: int = 16) -> Engine:
    if kind == "hf":
        from lidr.engines.hf import HFEngine

        return HFEngine(model_path, dtype=dtype, device=device, batch_size=batch_size)
    raise ValueError(f"unknown engine {kind!r} (available: hf)")


__all__ = ["ChatRequest", "Completion", "Engine", "Sampling", "make_engine"]
