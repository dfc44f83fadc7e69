"""A run's engine under `engine: auto`, chosen once, when the run starts.

`auto` stands for the engine this machine runs fastest (`resolve_engine`): the hf engine in
bfloat16 on a CPU with AMX, CTranslate2 in float32 on other CPUs. Their texts differ
(bfloat16 rounds), so a run started on one kind of CPU and resumed on another would mix two
engines' answers in one stage and no longer equal an uninterrupted run. The run directory
records what `auto` chose (RUN/engine.json); a resume, on any machine, runs that engine and
dtype again, and says so when this machine would have chosen another. A run made with
`--reuse` takes the record of the run it copies from, whose stages it continues, when its
generation settings that `auto` chooses from are that run's.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable

from lidr.config import GenerationConfig
from lidr.errors import ConfigError
from lidr.store import DamagedFileError, load_json, write_json_atomic

ENGINE_FILE = "engine.json"


def choose_here(gen: GenerationConfig) -> dict[str, str]:
    """What `gen`'s engine and dtype stand for on this machine, with the CPU that chose them."""
    from lidr.engines import resolve_engine

    engine = resolve_engine(gen)
    dtype = gen.dtype
    if engine == "hf" and dtype == "auto":  # the hf engine's own choice, which also moves with the CPU
        from lidr.engines.hf import pick_device, pick_dtype

        dtype = str(pick_dtype(dtype, pick_device(gen.device))).removeprefix("torch.")
    return {"engine": engine, "dtype": dtype, "machine": machine_name()}


def pin_engine(gen: GenerationConfig, run_dir: Path, reuse: Path | None,
               log: Callable[[str], None]) -> tuple[GenerationConfig, dict[str, str] | None]:
    """`gen` with `auto` replaced by the run's engine and dtype, and the record to write into
    `run_dir` (None when it is there already, or when the config names its engine)."""
    if gen.engine != "auto":
        return gen, None
    here = choose_here(gen)
    record, source = _recorded(Path(run_dir)), Path(run_dir) / ENGINE_FILE
    if record is None and reuse is not None and _same_choice(gen, Path(reuse)):
        record, source = _recorded(Path(reuse)), Path(reuse) / ENGINE_FILE
    to_write = None if source.parent == Path(run_dir) and record is not None else (record or here)
    record = record or here
    if (record["engine"], record["dtype"]) != (here["engine"], here["dtype"]):
        log(f"engine: {record['engine']} ({record['dtype']}), which `engine: auto` chose when the run started "
            f"on {record.get('machine', 'another machine')} ({source}); this machine would choose "
            f"{here['engine']} ({here['dtype']}). The run keeps its engine so that its stages stay alike.")
    return gen.model_copy(update={"engine": record["engine"], "dtype": record["dtype"]}), to_write


def check_pinned(gen: GenerationConfig, run_dir: Path) -> None:
    """Fail, before anything is written, when the run's recorded engine cannot run here."""
    from lidr.engines import check_engine

    try:
        check_engine(gen)
        if gen.engine == "vllm":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("vllm needs a CUDA GPU and this machine has none")
    except Exception as e:  # noqa: BLE001 - any reason it cannot run, said with the way out
        raise ConfigError(
            f"this run's `engine: auto` is {gen.engine} ({gen.dtype}), recorded in {Path(run_dir) / ENGINE_FILE} "
            f"when the run started, and it cannot run here: {e}. Resume it where {gen.engine} runs, or delete "
            f"that file to let this machine choose (the stages still to run will then be made by another "
            f"engine than those already written)") from e


def write_record(run_dir: Path, record: dict[str, str]) -> None:
    write_json_atomic(Path(run_dir) / ENGINE_FILE, record)


def machine_name() -> str:
    """The CPU's model name (Linux), else what Python knows of the processor."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# The settings `auto` chooses from: a run copying another's stages takes its record only when
# they are the same (an ablation that changes the dtype chooses anew).
_CHOICE_KEYS = ("engine", "dtype", "device", "ct2")


def _same_choice(gen: GenerationConfig, other_run: Path) -> bool:
    import yaml

    try:
        saved = yaml.safe_load((other_run / "config.yaml").read_text(encoding="utf-8"))["generation"]
        other = GenerationConfig.model_validate(saved)
    except Exception:  # noqa: BLE001 - no readable config: nothing to match, choose here
        return False
    return all(getattr(gen, k) == getattr(other, k) for k in _CHOICE_KEYS)


def _recorded(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / ENGINE_FILE
    if not path.is_file():
        return None
    record = load_json(path)
    if not isinstance(record, dict) or not {"engine", "dtype"} <= set(record):
        raise DamagedFileError(path, f"expected an object with 'engine' and 'dtype', found {record!r}")
    return record
