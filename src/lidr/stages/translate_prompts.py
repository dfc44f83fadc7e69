"""Prompt translation: English-only prompts -> aligned prompt files in every language.

For users who have prompts in the dominant language only. Any engine translates them
(the model itself, or a stronger one behind an HTTP engine) with the same prompt,
primer, parsing and failure accounting as self-translation. A prompt whose translation
fails in any language is left out of every language, so the files stay aligned; the
counts say how many and why.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from lidr.data.prompts import Prompt
from lidr.engines.base import ChatRequest, Engine, Sampling
from lidr.stages.translate import CLOSE, PARSED, PREFILL, translation_message, translation_record
from lidr.shards import run_sharded
from lidr.store import DONE, read_records, write_json_atomic, write_text_atomic


def prompt_translation_requests(prompts: list[Prompt], languages: list[str], max_new_tokens: int) -> list[ChatRequest]:
    requests = []
    for p in prompts:
        for lang in languages:
            requests.append(ChatRequest(
                id=f"{p.language}>{lang}:{p.id}",
                messages=translation_message(p.text, lang),
                max_new_tokens=max_new_tokens,
                prefill=PREFILL,
                stop=(CLOSE,),
                meta={"prompt_id": p.id, "source_language": p.language, "target_language": lang, "source": p.text},
            ))
    return requests


def write_aligned(records: list[dict[str, Any]], prompts: list[Prompt], languages: list[str],
                  out_dir: Path, text_key: str) -> dict[str, Any]:
    """Write `{lang}.jsonl` for the source language and every target, ids kept in all of them."""
    by_key = {(r["prompt_id"], r["target_language"]): r for r in records}
    failed = {lang: Counter() for lang in languages}
    keep = []
    for p in prompts:
        rows = [by_key[(p.id, lang)] for lang in languages]
        for lang, r in zip(languages, rows):
            if r["status"] not in PARSED:
                failed[lang][r["status"]] += 1
        if all(r["status"] in PARSED for r in rows):
            keep.append((p, rows))
    source = prompts[0].language
    files = {source: [{"id": p.id, text_key: p.text} for p, _ in keep]}
    for k, lang in enumerate(languages):
        files[lang] = [{"id": p.id, text_key: rows[k]["translation"]} for p, rows in keep]
    for lang, rows in files.items():
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        write_text_atomic(out_dir / f"{lang}.jsonl", body)
    return {"prompts": len(prompts), "kept": len(keep),
            "failed": {lang: dict(c) for lang, c in failed.items()}}


def translate_prompts(
    prompts: list[Prompt], languages: list[str], out_dir: Path, engine_factory: Callable[[], Engine],
    *, sampling: Sampling, max_new_tokens: int = 512, shard_size: int = 64, text_key: str = "instruction",
    accept_unclosed: bool = True, on_progress=None,
) -> dict[str, Any]:
    """Translate `prompts` into `languages`; shards under out_dir/work make it resumable."""
    work = out_dir / "work"
    requests = prompt_translation_requests(prompts, languages, max_new_tokens)
    engine = None

    def once() -> Engine:
        nonlocal engine
        engine = engine or engine_factory()
        return engine

    try:
        summary = run_sharded(work, requests, once, sampling, shard_size,
                              lambda r, c: translation_record(r, c, accept_unclosed), on_progress)
    finally:
        if engine is not None:
            engine.close()  # a server started for this model must not outlive the command
    stats = write_aligned(read_records(work), prompts, languages, out_dir, text_key)
    write_json_atomic(work / DONE, {**summary, **stats})
    return {**stats, "seconds": summary["seconds"]}
