"""Aligned multilingual prompt sets: the same prompt id in every language.

Sources are local files (jsonl, json, csv, parquet), a hub dataset, or files bundled
with lidr (`bundled:demo/iter_1/{lang}.jsonl`). Every problem is a `DataError` that
names the file, line or row, and key.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from lidr.config import PromptMix, PromptSource

BUNDLED_PREFIX = "bundled:"


class DataError(ValueError):
    """Bad input data, with a message naming where."""


@dataclass(frozen=True)
class Prompt:
    id: str
    language: str
    text: str
    task: str = "instruction"  # its source's `task`: "math" prompts get the answer_consistency gate
    max_new_tokens: int | None = None  # its source's cap on the answer (None: generation's)
    samples: int | None = None  # its source's answers per prompt (None: generation's)


def resolve_path(path: str, base_dir: Path | None) -> Path:
    """`bundled:x` -> lidr's package data; relative paths -> against the config's folder."""
    if path.startswith(BUNDLED_PREFIX):
        return Path(str(resources.files("lidr") / "data" / path[len(BUNDLED_PREFIX):]))
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p


def _not_utf8(path: Path, data: bytes, err: UnicodeDecodeError, line: int | None = None) -> DataError:
    line = line or data[: err.start].count(b"\n") + 1
    return DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8")


def _text(path: Path) -> str:
    """The whole file as text; utf-8-sig drops the byte-order mark that spreadsheet exports add."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, data, err) from None


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise _not_utf8(path, raw, err, lineno) from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: malformed JSON line ({err.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield f"{path}:{lineno}", rec


def _read_json(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: malformed JSON at line {err.lineno} ({err.msg})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: item {i} is not an object")
        yield f"{path} item {i}", rec


def _read_csv(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, rec in enumerate(csv.DictReader(io.StringIO(_text(path), newline=""))):
        yield f"{path} row {i + 2}", rec  # row 1 is the header


def _read_parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"{path}: not a readable parquet file ({first})") from None
    for i, rec in enumerate(table.to_pylist()):
        yield f"{path} row {i}", rec


_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}


def read_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, record) pairs from a local file; the location is for error messages."""
    if not path.is_file():
        raise DataError(f"prompt file not found: {path}")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(_READERS)})")
    return reader(path)


def _read_hub(src: PromptSource, lang: str) -> Iterator[tuple[str, dict[str, Any]]]:
    import datasets

    config = src.hub_config.format(lang=lang) if src.hub_config else None
    split = src.split.format(lang=lang)
    try:
        ds = datasets.load_dataset(src.hub, config, split=split)
    except Exception as err:  # hub errors come in many types; name the dataset
        raise DataError(f"cannot load hub dataset {src.hub!r} (config {config}, split {split}): {err}") from None
    for i, rec in enumerate(ds):
        yield f"{src.hub}[{config}/{split}] row {i}", rec


def _source_records(src: PromptSource, lang: str, base_dir: Path | None):
    if src.hub:
        return src.hub, _read_hub(src, lang)
    raw = src.paths[lang] if src.paths else src.path.replace("{lang}", lang)
    path = resolve_path(raw, base_dir)
    return str(path), read_records(path)


def load_language(src: PromptSource, lang: str, base_dir: Path | None) -> list[Prompt]:
    """All prompts of one language, in file order, with ids checked for duplicates."""
    name, records = _source_records(src, lang, base_dir)
    key = src.text_key_for(lang)
    prompts, seen = [], {}
    for row, (where, rec) in enumerate(records):
        if key not in rec:
            raise DataError(f"{where}: no text key {key!r} (keys: {', '.join(map(str, rec))})")
        text = rec[key]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: {key!r} must be a non-empty string")
        if src.id_key is None:
            pid = str(row)
        elif src.id_key not in rec:
            raise DataError(f"{where}: no id key {src.id_key!r}")
        else:
            pid = str(rec[src.id_key])
        if pid in seen:
            raise DataError(f"{where}: duplicate id {pid!r} (first at {seen[pid]})")
        seen[pid] = where
        prompts.append(Prompt(pid, lang, text, src.task, src.max_new_tokens, src.samples))
    if not prompts:
        raise DataError(f"{name}: no prompts for language {lang!r}")
    return prompts


def _check_alignment(by_lang: dict[str, list[Prompt]], dominant: str) -> None:
    ref = {p.id for p in by_lang[dominant]}
    for lang, prompts in by_lang.items():
        ids = {p.id for p in prompts}
        if ids == ref:
            continue
        missing = sorted(ref - ids)[:3]
        extra = sorted(ids - ref)[:3]
        raise DataError(
            f"prompt ids do not align: {lang} has {len(ids)} ids, {dominant} has {len(ref)}; "
            f"missing in {lang}: {missing or 'none'}; not in {dominant}: {extra or 'none'} "
            "(set id_key: null to align by row order)"
        )


def load_aligned(
    src: PromptSource | PromptMix, languages: list[str], base_dir: Path | None, limit: int | None = None
) -> dict[str, list[Prompt]]:
    """Prompts per language, aligned on ids, in the dominant language's order.

    `languages[0]` is the dominant language. The source's `offset` skips the first ids
    of the dominant language; `limit` (or the source's own) keeps the next N. A mix is its
    sources one after the other, `limit` applying to each.
    """
    if isinstance(src, PromptMix):
        return _load_mix(src, languages, base_dir, limit)
    by_lang = {lang: load_language(src, lang, base_dir) for lang in languages}
    dominant = languages[0]
    _check_alignment(by_lang, dominant)
    n = limit or src.limit
    order = [p.id for p in by_lang[dominant]][src.offset :]
    order = order[:n] if n else order
    if not order:
        raise DataError(f"offset {src.offset} leaves no prompts ({len(by_lang[dominant])} in {dominant})")
    out = {}
    for lang, prompts in by_lang.items():
        index = {p.id: p for p in prompts}
        out[lang] = [index[i] for i in order]
    return out


def _load_mix(
    mix: PromptMix, languages: list[str], base_dir: Path | None, limit: int | None
) -> dict[str, list[Prompt]]:
    parts = [load_aligned(src, languages, base_dir, limit) for src in mix.mix]
    first_source: dict[str, int] = {}
    for j, part in enumerate(parts):
        for p in part[languages[0]]:
            if p.id in first_source:  # stage records and pairs are keyed by prompt id
                raise DataError(f"prompt id {p.id!r} is in mix sources {first_source[p.id]} and {j} "
                                "(ids must differ between the sources of a mix)")
            first_source[p.id] = j
    return {lang: [p for part in parts for p in part[lang]] for lang in languages}
