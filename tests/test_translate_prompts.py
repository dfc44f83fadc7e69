"""Prompt translation: aligned files out, failures counted, ids kept in every language."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from helpers import PROMPTS, TRANSLATIONS
from lidr.cli import app
from lidr.config import PromptSource
from lidr.data.prompts import load_aligned
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


def test_translated_prompts_are_aligned_files_the_loop_reads(tmp_path, translating_model_dir):
    # This model answers every translation request with a known phrase of the target language
    # (helpers.TRANSLATIONS), so every translation succeeds and its text is known in advance.
    result, out = translate(tmp_path, translating_model_dir, 3, "es,fr", 16)
    work = json.loads((out / "work" / "_done.json").read_text())
    assert work["prompts"] == 3 and work["n"] == 6 and work["kept"] == 3
    assert "3 of 3 prompts translated" in result.stdout
    records = read_records(out / "work")
    assert sorted(r["status"] for r in records) == ["ok"] * 6
    prompts = load_aligned(PromptSource(path=str(out / "{lang}.jsonl")), ["en", "es", "fr"], None)
    assert [(p.id, p.text) for p in prompts["en"]] == [(f"p{i}", PROMPTS[i][0]) for i in range(3)]
    for lang in ("es", "fr"):
        # The model learned its phrases in ~100 steps: the first word is reliable, the rest nearly.
        first_word = TRANSLATIONS[lang].split()[0]
        assert [(p.id, p.text.split()[0]) for p in prompts[lang]] == [(f"p{i}", first_word) for i in range(3)]


def test_failures_are_counted_and_dropped_from_every_language(tmp_path, tiny_model_dir):
    # A random model never closes the tag: every translation runs to the cap and fails.
    result, out = translate(tmp_path, tiny_model_dir, 2, "de", 8)
    assert "0 of 2 prompts translated" in result.stdout and "de: 2 failed" in result.stdout
    assert (out / "en.jsonl").read_text() == "" and (out / "de.jsonl").read_text() == ""
