"""The run directory's layout, named once; the pipeline writes it, the report, the summary,
the cards and the stopping rule read it through these names.

    RUN/config.yaml                    the resolved config (a re-run must match it)
    RUN/config_dir.json                the folder its relative paths were read against
    RUN/engine.json                    what `engine: auto` chose when the run started (engines/pinned.py)
    RUN/iter_<t>/responses/            stage 1: shards + _done.json
    RUN/iter_<t>/translations/         stage 2: shards + _done.json
    RUN/iter_<t>/pairs/                stage 3: pairs.parquet + _done.json
    RUN/iter_<t>/train/_done.json      stage 4: the training summary (work files under train/work)
    RUN/iter_<t>/model/                M(t), a plain model directory
    RUN/iter_<t>/eval/<label>.json     M(t)'s evaluation results (M0: iter_0)
    RUN/tb/                            TensorBoard logs (lidr/tracking.py)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from lidr.config import RunConfig, diff_configs, to_yaml
from lidr.data.prompts import resolve_path
from lidr.store import DONE, DamagedFileError, RunDirError, load_json

CONFIG_FILE = "config.yaml"
CONFIG_DIR_FILE = "config_dir.json"
STAGES = ("responses", "translations", "pairs", "train")
PAIRS_FILE = "pairs.parquet"
ITER_PREFIX = "iter_"


def config_path(run_dir: Path) -> Path:
    return Path(run_dir) / CONFIG_FILE


def config_dir(run_dir: Path) -> Path | None:
    """The folder the run's config read its relative paths against; None when not recorded
    (a run from an embedded config, or one saved before the record existed)."""
    path = Path(run_dir) / CONFIG_DIR_FILE
    try:
        return Path(load_json(path)["config_dir"]) if path.is_file() else None
    except (DamagedFileError, KeyError, TypeError):
        return None


def comparable_configs(old: dict[str, Any], run_dir: Path, new: dict[str, Any],
                       base_dir: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """`old` (the config saved in `run_dir`) and `new` (a config read from `base_dir`) with
    their paths read against each one's folder, so that two configs in different folders
    naming the same files compare equal; as written when either folder is unknown."""
    saved_base = config_dir(run_dir)
    if saved_base is None or base_dir is None:
        return old, new
    return _resolved_paths(old, saved_base), _resolved_paths(new, Path(base_dir))


def _resolved_paths(value: Any, base_dir: Path) -> Any:
    """`value` (a config as plain data) with every path made absolute, relative ones read
    against `base_dir`. A path is a string with a slash whose folder exists ({lang} stays in
    the file name); hub ids (`org/name`), `bundled:` names and URLs stay as they are."""
    if isinstance(value, dict):
        return {k: _resolved_paths(v, base_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved_paths(v, base_dir) for v in value]
    if not isinstance(value, str) or "/" not in value or ":" in value:
        return value
    path = resolve_path(value, base_dir)  # an absolute path stays itself; links resolved below
    return str(path.resolve()) if path.parent.is_dir() else value


def iteration_dir(run_dir: Path, t: int) -> Path:
    return Path(run_dir) / f"{ITER_PREFIX}{t}"


def stage_dir(run_dir: Path, t: int, stage: str) -> Path:
    return iteration_dir(run_dir, t) / stage


def model_dir(run_dir: Path, t: int) -> Path:
    return iteration_dir(run_dir, t) / "model"


def eval_dir(run_dir: Path, t: int) -> Path:
    return iteration_dir(run_dir, t) / "eval"


def eval_result_path(run_dir: Path, t: int, label: str) -> Path:
    return eval_dir(run_dir, t) / f"{label}.json"


def iteration_dirs(run_dir: Path) -> dict[int, Path]:
    """`iter_<t>` directories by t, in order; other names (`iter_x`, files) are not iterations."""
    found = {}
    for p in Path(run_dir).glob(f"{ITER_PREFIX}*"):
        suffix = p.name.removeprefix(ITER_PREFIX)
        if p.is_dir() and suffix.isdigit():
            found[int(suffix)] = p
    return dict(sorted(found.items()))


OnError = Callable[[Path, str], None]


def _raise(path: Path, why: str) -> None:
    raise DamagedFileError(path, why)


def stage_records(it_dir: Path, on_error: OnError = _raise) -> dict[str, Any]:
    """Each finished stage's `_done.json` in one iteration directory, by stage name."""
    records = {}
    for done in sorted(Path(it_dir).glob(f"*/{DONE}")):
        if done.parent.name == "eval":
            continue
        try:
            records[done.parent.name] = load_json(done)
        except DamagedFileError as e:
            on_error(done, e.why)
    return records


def eval_results(it_dir: Path, on_error: OnError = _raise) -> dict[str, dict[str, Any]]:
    """The evaluation results in `it_dir/eval`, by label. Raw outputs (lm-eval's json,
    model_outputs) live beside them: only files shaped like a result
    (`{"languages": {lang: {...}}}`) are results."""
    results = {}
    for path in sorted((Path(it_dir) / "eval").glob("*.json")):
        try:
            data = load_json(path)
        except DamagedFileError as e:
            on_error(path, f"unreadable: {e.why}")
            continue
        langs = data.get("languages") if isinstance(data, dict) else None
        if isinstance(langs, dict) and all(isinstance(v, dict) for v in langs.values()):
            results[path.stem] = data
    return results


def drop_reasons(lang_stats: dict[str, Any]) -> dict[str, int]:
    """One language's dropped pairs by reason, from the pairs stage's `_done.json`: pairing
    drops as they are, quality-gate drops as `gate:<name>`."""
    return {**(lang_stats.get("dropped") or {}),
            **{f"gate:{k}": v for k, v in (lang_stats.get("gates") or {}).items()}}


def check_saved_config(run_dir: Path, cfg: RunConfig, log: Callable[[str], None],
                       base_dir: Path | None = None) -> None:
    """Refuse a run directory that holds another run: not empty without a config.yaml, or a
    saved config whose settings differ from `cfg` (a re-run with the same config resumes).
    With `base_dir` (the folder of `cfg`'s file) and the run's record of its own, relative
    paths are compared by what they name, so the config moved to another folder resumes."""
    saved = config_path(run_dir)
    if not saved.is_file():
        # Hidden names are other workers' files being written (config.yaml first of all).
        if Path(run_dir).exists() and any(not p.name.startswith(".") for p in Path(run_dir).iterdir()):
            raise RunDirError(f"{run_dir} is not empty and holds no lidr run (no {CONFIG_FILE})")
        return
    old = _saved_config(saved, cfg, log)
    if old is None:
        return
    differ = diff_configs(*comparable_configs(old, run_dir, cfg.model_dump(mode="json"), base_dir))
    if differ:
        raise RunDirError(
            f"{run_dir} holds a run with a different config; keys that differ: {', '.join(differ)} "
            "(use another --output, or the same config and --set to resume)"
        )


def _saved_config(saved: Path, cfg: RunConfig, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The saved config as a mapping; None when it is a cut copy of this very config.

    config.yaml is always written as `to_yaml(cfg)`, so a file cut short (full disk, a
    copy interrupted) that is a prefix of this config's text can only come from this
    config: the run resumes and rewrites it. Anything else that does not parse is
    refused, since the settings that built the run's files can no longer be checked.
    """
    raw, text = saved.read_bytes(), to_yaml(cfg).encode()
    if raw and text.startswith(raw) and len(raw) < len(text):
        log(f"[yellow]warning:[/yellow] {saved} is cut short; this config matches what is left of it and "
            "rewrites it")
        return None
    try:
        return load_saved_config(saved, raw)
    except DamagedFileError as err:
        raise RunDirError(f"{saved} is damaged ({err.why}); restore it, or use another --output to start a "
                          "new run") from None


def load_saved_config(path: Path, raw: bytes | None = None) -> dict[str, Any]:
    """A saved config.yaml (its bytes `raw` when already read) as a mapping; DamagedFileError
    saying why when it is not one."""
    try:
        data = yaml.safe_load((path.read_bytes() if raw is None else raw).decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DamagedFileError(path, f"not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise DamagedFileError(path, "empty" if data is None else f"a YAML {type(data).__name__}, not a mapping")
    return data
