"""The HTTP client of the engines that talk to a server: `httpx2` (pydantic's httpx, a
dependency of huggingface_hub and so always installed with transformers); plain `httpx`
where httpx2 is absent."""

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older huggingface_hub
    import httpx  # type: ignore[no-redef]

__all__ = ["httpx"]
