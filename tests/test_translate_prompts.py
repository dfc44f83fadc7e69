"""Prompt translation: aligned files out, failures counted, ids kept in every language."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from helpers import PROMPTS
from lidr.cli import app
from lidr.config import PromptSource
from lidr.data.prompts import load_aligned
from lidr.stages.translate import PARSED
from lidr.store import read_records

runner = CliRunner()


def english_file(tmp_path, n):
    path = tmp_path / "en.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "instruction": p[0]}) + "\n" for i, p in enumerate(PROMPTS[:n])))
    return path


def translate(tmp_path, model, n, languages, max_new_tokens):
    """Run `lidr translate-prompts` on the first n test prompts; (CLI result, output folder)."""
    out = tmp_path / "out"
    result = runner.invoke(app, ["translate-prompts", "--model", str(model), "--input",
                                 str(english_file(tmp_path, n)), "--languages", languages,
                                 "--max-new-tokens", str(max_new_tokens), "--output", str(out)])
    assert result.exit_code == 0, result.output
    return result, out


def test_translated_prompts_are_aligned_files_the_loop_reads(tmp_path, smollm2_dir):
    result, out = translate(tmp_path, smollm2_dir, 3, "es,fr", 64)
    work = json.loads((out / "work" / "_done.json").read_text())
    assert work["prompts"] == 3 and work["n"] == 6
    kept = work["kept"]
    assert f"{kept} of 3 prompts translated" in result.stdout
    prompts = load_aligned(PromptSource(path=str(out / "{lang}.jsonl")), ["en", "es", "fr"], None) if kept else {}
    records = read_records(out / "work")
    failed_ids = {r["prompt_id"] for r in records if r["status"] not in PARSED}
    assert kept == 3 - len(failed_ids)  # a prompt failed in any language is left out of all
    for lang in ("es", "fr"):
        assert len(prompts.get(lang, [])) == kept
        assert sum(work["failed"][lang].values()) == sum(
            1 for r in records if r["target_language"] == lang and r["status"] not in PARSED)
        by_id = {r["prompt_id"]: r["translation"] for r in records if r["target_language"] == lang}
        assert all(p.text == by_id[p.id] for p in prompts.get(lang, []))


def test_failures_are_counted_and_dropped_from_every_language(tmp_path, tiny_model_dir):
    # A random model never closes the tag: every translation runs to the cap and fails.
    result, out = translate(tmp_path, tiny_model_dir, 2, "de", 8)
    assert "0 of 2 prompts translated" in result.stdout and "de: 2 failed" in result.stdout
    assert (out / "en.jsonl").read_text() == "" and (out / "de.jsonl").read_text() == ""
