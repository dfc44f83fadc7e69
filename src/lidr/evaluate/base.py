"""What every evaluation task shares: finding its data files per language, and the
result file `<out>/<task>.json`:

    {"task": "mgsm", "model": "...", "languages": {"es": {"n": 250, "accuracy": ...}}, ...}

Raw generations (and judgments) are written next to it, so a result can be checked and
a report rebuilt without a model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from lidr.data.prompts import DataError, read_records, resolve_path
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


def data_files(data: list[str], languages: list[str] | None,
               base_dir: Path | None = None) -> dict[str, list[Path]]:
    """Language -> its files, in the order given. Each entry is a path with `{lang}` (one file
    per language) or a file named by its language; several entries that give one language
    several files pool them into one evaluation (a dev split made of two, say)."""
    files: dict[str, list[Path]] = {}
    for entry in data:
        if "{lang}" in entry:
            if not languages:
                raise DataError(f"--data {entry} has {{lang}}: give --languages")
            found = {lang: resolve_path(entry.replace("{lang}", lang), base_dir) for lang in languages}
        else:
            path = resolve_path(entry, base_dir)
            lang = language_from_name(path)
            if lang is None:
                raise DataError(f"cannot tell the language of {path} from its name; use a path with {{lang}}")
            found = {lang: path}
        for lang, path in found.items():
            if path in files.get(lang, []):
                raise DataError(f"evaluation data file given twice: {path}")
            files.setdefault(lang, []).append(path)
    if languages:
        missing = [lang for lang in languages if lang not in files]
        if missing:
            named = [str(p) for paths in files.values() for p in paths]
            raise DataError(f"no data file for {missing} among {named}")
        files = {lang: files[lang] for lang in languages}
    for lang, paths in files.items():
        get_language(lang)
        for path in paths:
            if not path.is_file():
                raise DataError(f"evaluation data file not found: {path}")
    return files


def one_file_each(files: dict[str, list[Path]], task: str) -> dict[str, Path]:
    """The file of each language, for a task that reads one per language."""
    for lang, paths in files.items():
        if len(paths) > 1:
            raise DataError(f"{task} reads one data file per language; {lang} has {len(paths)}: "
                            f"{', '.join(map(str, paths))}")
    return {lang: paths[0] for lang, paths in files.items()}


def as_paths(paths: Path | str | list[Path]) -> list[Path]:
    """One file or a language's several files, as a list."""
    return [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]


def pooled_records(paths: list[Path]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(location, id, record) over a language's files in order. The id is the record's own, or
    its row number (prefixed by the file's place in the list when there are several); an id
    seen twice is an error, since per-item comparisons between models match items by id."""
    seen: dict[str, str] = {}
    for i, path in enumerate(paths):
        for row, (where, rec) in enumerate(read_records(path)):
            if rec.get("id") is not None:
                item_id = str(rec["id"])
            else:
                item_id = str(row) if len(paths) == 1 else f"{i}:{row}"
            if item_id in seen:
                raise DataError(f"{where}: duplicate id {item_id!r} (first at {seen[item_id]})")
            seen[item_id] = where
            yield where, item_id, rec


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
