"""Sampled self-translation retries (`translation.retries`): an xx pair whose first translation
the gates drop takes the first retry with which it passes every gate (stages/retries.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq

from helpers import write_config, write_prompt_set
from lidr.config import GatesConfig
from lidr.stages.gates import apply_gates
from lidr.stages.pairs import build_pairs
from lidr.stages.retries import recover_with_retries
from lidr.stages.translate import translation_requests
from lidr.store import read_json


def resp(pid, lang, text):
    return {"prompt_id": pid, "language": lang, "prompt": f"{lang} question {pid}", "response": text,
            "finish_reason": "stop", "n_tokens": 30}


def tr(pid, src, tgt, text, retry=None):
    record = {"prompt_id": pid, "source_language": src, "target_language": tgt, "translation": text,
              "status": "ok", "finish_reason": "stop"}
    return {**record, "retry": retry} if retry else record


def test_each_english_answer_is_also_translated_retries_times_at_the_retry_temperature():
    responses = [resp("1", "en", "Tom has 12 apples and buys 4, so he has 16."), resp("1", "fr", "Tom a 16 pommes.")]
    plain = translation_requests(responses, "en", ["fr"], set(), 2.0, 256)
    with_retries = translation_requests(responses, "en", ["fr"], set(), 2.0, 256, retries=2, retry_temperature=0.7)
    assert sorted(q.id for q in plain) == ["en>fr:1", "fr>en:1"]  # a run without retries is unchanged
    retried = [q for q in with_retries if q.meta.get("retry")]
    assert sorted(q.id for q in retried) == ["en>fr:1~retry1", "en>fr:1~retry2"]
    assert {q.temperature for q in retried} == {0.7} and {q.meta["retry"] for q in retried} == {1, 2}
    assert all(q.meta["source_language"] == "en" for q in retried)  # back-translations are not retried
    first = next(q for q in with_retries if q.id == "en>fr:1")
    assert first.temperature is None and retried[0].messages == first.messages
    # Every request of a run with retries says which it is (a shard's columns are its first row's).
    assert {q.meta["retry"] for q in with_retries} == {0, 1, 2} and all("retry" not in q.meta for q in plain)


ENGLISH = "Tom has 12 apples. He buys 4 more apples, so he has 12 + 4 = 16 apples now."
FRENCH_ANSWER = "Tom a 12 pommes. Il achète 4 pommes de plus, donc il a 12 + 4 = 16 pommes maintenant."
NATIVE = "Tom a des pommes et il en achète encore beaucoup, il a donc 20 pommes au total."


def gated(responses, gates):
    def pairs_from(translations):
        built, _ = build_pairs(responses, translations, "en", ["fr"], set())
        return apply_gates(built, gates, math=True)[0]
    return pairs_from


def test_a_pair_dropped_for_its_first_translation_is_recovered_by_the_first_retry_that_passes():
    responses = [resp(p, "en", ENGLISH) for p in ("a", "b", "c")] + [resp(p, "fr", NATIVE) for p in ("a", "b", "c")]
    back = [tr(p, "fr", "en", "Tom has apples and he buys many more, so he has 20 apples in all.") for p in "abc"]
    translations = back + [
        tr("a", "en", "fr", FRENCH_ANSWER),  # kept at once: its retries are never used
        tr("a", "en", "fr", "Tom a 12 pommes et il en achète 4, il en a donc 16 en tout maintenant.", retry=1),
        tr("b", "en", "fr", ENGLISH),  # the English copied: language_id drops it
        tr("b", "en", "fr", ENGLISH, retry=1),  # still English
        tr("b", "en", "fr", FRENCH_ANSWER, retry=2),  # French with the English answer's number: kept
        tr("c", "en", "fr", ENGLISH),
        tr("c", "en", "fr", "Tom a 12 pommes. Il achète 4 pommes de plus, il a donc 17 pommes.", retry=1),  # 17, not 16
    ]
    gates = GatesConfig(length_ratio=None, min_langid_chars=10, unidentified="drop")
    pairs_from = gated(responses, gates)
    first = pairs_from([t for t in translations if not t.get("retry")])
    assert {(p["language"], p["prompt_id"]) for p in first if p["via_language"] is None} == {("fr", "a")}

    kept, recovered = recover_with_retries(first, translations, "en", pairs_from)
    french = {p["prompt_id"]: p for p in kept if p["language"] == "fr"}
    assert set(french) == {"a", "b"} and recovered == {"fr": 1}
    assert french["a"]["chosen"][0]["content"] == FRENCH_ANSWER  # the first translation's pair stays
    assert french["b"]["chosen"][0]["content"] == FRENCH_ANSWER and french["b"]["translation_retry"] == 2
    assert french["b"]["rejected"][0]["content"] == NATIVE
    assert len([p for p in kept if p["language"] == "en"]) == len([p for p in first if p["language"] == "en"])

    # Without the gates that drop them, nothing is left to recover.
    ungated = gated(responses, GatesConfig(enabled=False))
    kept, recovered = recover_with_retries(ungated([t for t in translations if not t.get("retry")]), translations,
                                           "en", ungated)
    assert not recovered and sum(p["language"] == "fr" for p in kept) == 3


def test_a_run_with_retries_translates_them_and_keeps_one_pair_per_answer(tmp_path, translating_model_dir):
    """The retries go through the run's translation stage (sharded and resumable as the first
    translations) and never add a second pair for an answer: with the gates off every first
    translation's pair is kept, so the pairs equal those of the same run without retries."""
    prompts = write_prompt_set(tmp_path / "prompts", n=3)
    runs = {}
    for name, retries in (("plain", 0), ("retries", 2)):
        cfg = write_config(tmp_path / f"{name}.yaml", translating_model_dir, prompts, iterations=1,
                           translation={"max_new_tokens": 32, "retries": retries})
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "--output", str(out)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = out
    directions = read_json(runs["retries"] / "iter_1" / "translations" / "_done.json")["directions"]
    made = {d: v["parsed"] + v["failed"] for d, v in directions.items()}
    assert made["en>es"] >= 1 and made["en>es retries"] == 2 * made["en>es"]  # two retries per first translation
    assert "es>en retries" not in made
    assert directions["en>es"] == read_json(runs["plain"] / "iter_1" / "translations" / "_done.json")["directions"]["en>es"]
    pairs = {name: pq.read_table(run / "iter_1" / "pairs" / "pairs.parquet").to_pylist() for name, run in runs.items()}
    texts = {name: sorted(json.dumps([p["language"], p["chosen"], p["rejected"]]) for p in rows)
             for name, rows in pairs.items()}
    assert texts["retries"] == texts["plain"]
    stats = read_json(runs["retries"] / "iter_1" / "pairs" / "_done.json")["languages"]
    assert stats["es"]["translation_retries"] == 0 and stats["fr"]["translation_retries"] == 0
