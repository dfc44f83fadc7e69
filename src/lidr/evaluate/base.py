"""What every evaluation task shares: finding its data files per language, and the
result file `<out>/<task>.json`:

    {"task": "mgsm", "model": "...", "languages": {"es": {"n": 250, "accuracy": ...}}, ...}

Raw generations (and judgments) are written next to it, so a result can be checked and
a report rebuilt without a model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lidr.data.prompts import DataError, resolve_path
from lidr.languages import LANGUAGES, get_language
from lidr.store import write_json_atomic

# Keys under which evaluation files keep their question / prompt text, in order of preference.
TEXT_KEYS = ("question", "query", "instruction", "prompt")


def language_from_name(path: Path) -> str | None:
    """The language code in a file name: mgsm_es.jsonl, es.json, x_alpacaeval-de.json."""
    for part in reversed(re.split(r"[_\-.]", path.name.removesuffix("".join(path.suffixes)))):
        if part in LANGUAGES:
            return part
    return None


def data_files(data: list[str], languages: list[str] | None, base_dir: Path | None = None) -> dict[str, Path]:
    """Language -> file, from one template with `{lang}` or from files named by language."""
    if len(data) == 1 and "{lang}" in data[0]:
        if not languages:
            raise DataError(f"--data {data[0]} has {{lang}}: give --languages")
        files = {lang: resolve_path(data[0].replace("{lang}", lang), base_dir) for lang in languages}
    else:
        files = {}
        for d in data:
            path = resolve_path(d, base_dir)
            lang = language_from_name(path)
            if lang is None:
                raise DataError(f"cannot tell the language of {path} from its name; use a path with {{lang}}")
            files[lang] = path
        if languages:
            missing = [lang for lang in languages if lang not in files]
            if missing:
                raise DataError(f"no data file for {missing} among {[str(p) for p in files.values()]}")
            files = {lang: files[lang] for lang in languages}
    for lang, path in files.items():
        get_language(lang)
        if not path.is_file():
            raise DataError(f"evaluation data file not found: {path}")
    return files


def text_of(record: dict[str, Any], where: str) -> str:
    for key in TEXT_KEYS:
        if isinstance(record.get(key), str) and record[key].strip():
            return record[key]
    raise DataError(f"{where}: no text under any of {', '.join(TEXT_KEYS)}")


def write_result(out_dir: Path, task: str, model: str, languages: dict[str, dict[str, Any]],
                 **extra: Any) -> dict[str, Any]:
    result = {"task": task, "model": model, "languages": languages, **extra}
    write_json_atomic(Path(out_dir) / f"{task}.json", result)
    return result


def check_data(task: Any, languages: list[str], base_dir: Path | None, gen: Any = None) -> None:
    """A task module's `check` when all it reads before a model loads is its data files."""
    data_files(task.data, languages, base_dir)
