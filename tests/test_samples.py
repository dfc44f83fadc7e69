"""Several answers per prompt (`generation.samples`): the first is drawn as a one-answer run
draws it, the others at `sample_temperature`; answer k in English pairs with answer k in xx."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from helpers import write_config, write_prompt_set
from lidr.config import ConfigError, GatesConfig, GenerationConfig, PromptSource, parse_config
from lidr.data.prompts import load_aligned
from lidr.engines.base import ChatRequest, Sampling
from lidr.stages.gates import agreement_counts, apply_gates, disagreeing_answers
from lidr.stages.generate import generation_requests
from lidr.stages.pairs import build_pairs
from lidr.stages.translate import translation_requests
from lidr.store import read_json


def test_samples_need_a_temperature():
    with pytest.raises(ValueError, match="samples: 3 greedy answers to one prompt are the same answer"):
        GenerationConfig(samples=3)
    assert GenerationConfig(samples=3, sample_temperature=0.7).samples == 3
    assert GenerationConfig(samples=2, temperature=0.8).sample_temperature is None


def _engine(kind, model_dir, tmp_path):
    if kind == "ct2":
        pytest.importorskip("ctranslate2")
        from lidr.engines.ct2 import CT2Engine

        return CT2Engine(str(model_dir), batch_size=8, cache=tmp_path / "ct2")
    from lidr.engines.hf import HFEngine

    return HFEngine(str(model_dir), batch_size=8, dtype="float32")


@pytest.mark.parametrize("kind", ["ct2", "hf"])
def test_a_request_samples_at_its_own_temperature(kind, smollm2_dir, tmp_path):
    """In one call, greedy requests give their greedy text (no batch mixes temperatures) and
    the same prompts at temperature 1 give other, seeded, text."""
    engine = _engine(kind, smollm2_dir, tmp_path)
    questions = ["Tom has 12 apples. He buys 4 more. How many apples does Tom have now?",
                 "¿Cuánto es 7 más 5?", "Décris un chat.", "Name three colours."]
    greedy = [ChatRequest(f"g{k}", [{"role": "user", "content": q}], max_new_tokens=24)
              for k, q in enumerate(questions)]
    hot = [ChatRequest(f"h{k}", r.messages, r.max_new_tokens, temperature=1.0) for k, r in enumerate(greedy)]
    stage = Sampling(seed=5)  # the stage is greedy; `hot` requests override its temperature
    alone = [c.text for c in engine.generate(greedy, stage)]
    mixed = engine.generate(hot[:2] + greedy + hot[2:], stage)
    again = engine.generate(hot[:2] + greedy + hot[2:], stage)
    engine.close()
    by_id = {c.id: c.text for c in mixed}
    assert [by_id[r.id] for r in greedy] == alone
    sampled = [by_id[r.id] for r in hot]
    assert sum(s != g for s, g in zip(sampled, alone)) >= 3, (sampled, alone)
    assert mixed == again  # seeded


def _record(pid, k, lang, text):
    return {"prompt_id": pid, "sample": k, "language": lang, "prompt": f"{pid} in {lang}",
            "response": text, "finish_reason": "stop", "n_tokens": 3}


def _translation(pid, k, src, tgt, text):
    return {"prompt_id": pid, "sample": k, "source_language": src, "target_language": tgt,
            "translation": text, "status": "ok", "finish_reason": "stop"}


def test_answer_k_pairs_with_answer_k():
    responses, translations = [], []
    for k in (0, 1):
        responses += [_record("p1", k, "en", f"en answer {k}"), _record("p1", k, "es", f"es answer {k}")]
        translations += [_translation("p1", k, "en", "es", f"en answer {k}, in es"),
                         _translation("p1", k, "es", "en", f"es answer {k}, in en")]
    pairs, stats = build_pairs(responses, translations, "en", ["es"], set())
    got = {(p["language"], p["sample"]): (p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs}
    assert got == {("es", 0): ("en answer 0, in es", "es answer 0"), ("en", 0): ("en answer 0", "es answer 0, in en"),
                   ("es", 1): ("en answer 1, in es", "es answer 1"), ("en", 1): ("en answer 1", "es answer 1, in en")}
    assert stats["es"]["kept"] == 2
    # A run made before samples existed has no `sample` field: every answer is the first.
    old = [{k: v for k, v in r.items() if k != "sample"} for r in responses + translations if r["sample"] == 0]
    pairs, _ = build_pairs(old[:2], old[2:], "en", ["es"], set())
    assert [p["sample"] for p in pairs] == [0, 0]


def test_first_answers_come_first_in_a_one_answer_runs_order():
    """So the first answers' shards are a one-answer run's, and no shard mixes greedy and sampled
    requests (an engine batches one temperature at a time)."""
    prompts = load_aligned(PromptSource(path="bundled:arith/train_1/{lang}.jsonl", text_key="question", limit=40),
                           ["en", "es"], None)
    one = generation_requests(prompts, 64, None)
    three = generation_requests(prompts, 64, None, samples=3, sample_temperature=0.7)
    assert [r.id for r in three[:len(one)]] == [r.id for r in one]
    assert {r.meta["sample"] for r in three[len(one):]} == {1, 2}
    lengths = [len(r.messages[0]["content"]) for r in three[len(one):]]
    assert lengths == sorted(lengths, reverse=True)  # the sampled ones longest first too


# ---- the agreement gate: self-consistency between a prompt's answers -------------------------

def test_agreement_counts_answers_ending_on_the_same_number():
    responses = [_record("p1", 0, "en", "4 + 8 = 12. The answer is 12."), _record("p1", 1, "en", "She has 12.0 now."),
                 _record("p1", 2, "en", "4 + 3 = 7"), _record("p2", 0, "en", "No number here."),
                 _record("p2", 1, "en", "It is 5."), _record("p1", 0, "es", "12")]  # es: not counted
    assert agreement_counts(responses, "en") == {("p1", 0): 2, ("p1", 1): 2, ("p1", 2): 1, ("p2", 0): 0,
                                                 ("p2", 1): 1}


def test_the_agreement_gate_keeps_the_pairs_of_answers_that_agree():
    """Three answers to one word problem, two ending on 12: the pairs of the third (en and es)
    are dropped under `agreement`; a prompt that is not math is not checked."""
    en = {0: "4 + 8 = 12. The answer is 12.", 1: "Tom has 12 apples.", 2: "4 + 3 = 7. The answer is 7."}
    es = {0: "Tom tiene manzanas y peras en casa.", 1: "Tom tiene doce manzanas en la cesta.",
          2: "Tom tiene siete manzanas en la cesta."}
    responses, translations = [], []
    for pid in ("word-1", "chat-1"):
        for k in en:
            responses += [_record(pid, k, "en", en[k]), _record(pid, k, "es", es[k])]
            translations += [_translation(pid, k, "en", "es", f"Traducido: {en[k]}"),
                             _translation(pid, k, "es", "en", f"Translated: {es[k]}")]
    pairs, _ = build_pairs(responses, translations, "en", ["es"], set())
    only_agreement = GatesConfig(agreement=2, language_id=False, degenerate=False, length_ratio=None,
                                 answer_consistency=False, translation_requests=False, dedupe=False)
    kept, stats = apply_gates(pairs, only_agreement, math=frozenset({"word-1"}),
                              agreement=agreement_counts(responses, "en"))
    assert sorted((p["prompt_id"], p["sample"]) for p in kept if p["language"] == "es") == [
        ("chat-1", 0), ("chat-1", 1), ("chat-1", 2), ("word-1", 0), ("word-1", 1)]
    assert stats == {"es": {"agreement": 1}, "en": {"agreement": 1}}


def test_answers_the_agreement_gate_drops_are_not_translated():
    """The pairs of a disagreeing draw are dropped whatever their translations say: the
    translation stage skips them (both directions), and the pairs built without them, counted
    under the gate, are exactly those the gate keeps from a full translation."""
    en = {0: "4 + 8 = 12. The answer is 12.", 1: "Tom has 12 apples.", 2: "4 + 3 = 7. The answer is 7."}
    es = {0: "Tom tiene manzanas y peras en casa.", 1: "Tom tiene doce manzanas en la cesta.",
          2: "Tom tiene siete manzanas en la cesta."}
    responses, translations = [], []
    for pid in ("word-1", "word-2", "chat-1"):
        for k in en:
            text = en[k] if pid != "word-2" else f"It is {k + 1}."  # word-2: three different numbers
            responses += [_record(pid, k, "en", text), _record(pid, k, "es", es[k])]
            translations += [_translation(pid, k, "en", "es", f"Traducido: {text}"),
                             _translation(pid, k, "es", "en", f"Translated: {es[k]}")]
    math = frozenset({"word-1", "word-2"})
    skip = disagreeing_answers(responses, "en", math, 2)
    assert skip == {("word-1", 2), ("word-2", 0), ("word-2", 1), ("word-2", 2)}

    requests = translation_requests(responses, "en", ["es"], set(), 2.0, 64, skip_answers=skip)
    asked = {r.id for r in requests}
    assert len(asked) == 2 * 5 and "en>es:word-1" in asked and "es>en:word-1#1" in asked
    assert not {"en>es:word-1#2", "es>en:word-1#2", "en>es:word-2", "es>en:word-2#1"} & asked

    gates = GatesConfig(agreement=2, language_id=False, degenerate=False, length_ratio=None,
                        answer_consistency=False, translation_requests=False, dedupe=False)
    agreement = agreement_counts(responses, "en")
    full, _ = build_pairs(responses, translations, "en", ["es"], set())
    kept_full, _ = apply_gates(full, gates, math=math, agreement=agreement)
    made = [t for t in translations if (t["prompt_id"], t["sample"]) not in skip]
    part, stats = build_pairs(responses, made, "en", ["es"], set(), skipped=dict.fromkeys(skip, "agreement"))
    kept_part, _ = apply_gates(part, gates, math=math, agreement=agreement)
    assert kept_part == kept_full and len(kept_full) == 10
    assert stats["es"]["dropped"] == {"agreement": 4} and stats["en"]["dropped"] == {"agreement": 4}


def test_agreement_needs_as_many_answers():
    with pytest.raises(ConfigError, match=r"pairs.gates.agreement 2 .* generation.samples is 1; set samples "
                                          r"to at least 2"):
        parse_config({"prompts": [{"path": "p/{lang}.jsonl"}], "pairs": {"gates": {"agreement": 2}}})
    parse_config({"prompts": [{"path": "p/{lang}.jsonl"}], "pairs": {"gates": {"agreement": 2}},
                  "generation": {"samples": 3, "sample_temperature": 0.7}})


def test_a_run_with_three_answers_per_prompt(tmp_path, translating_model_dir):
    """The first answers are a one-answer run's; the others are sampled, translated with their
    own ids and paired with the answers of their own draw."""
    prompts = write_prompt_set(tmp_path / "prompts", n=4)
    runs = {}
    for name, gen in [("one", {}), ("three", {"samples": 3, "sample_temperature": 1.0})]:
        cfg = write_config(tmp_path / f"{name}.yaml", translating_model_dir, prompts, iterations=1,
                           generation={"engine": "hf", **gen})
        proc = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "-o", str(tmp_path / name)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = tmp_path / name / "iter_1"

    def rows(name, stage):
        return pq.read_table(runs[name] / stage).to_pylist()

    one, three = rows("one", "responses"), rows("three", "responses")
    assert len(three) == 3 * len(one) == 3 * 4 * 3  # 4 prompts x en/es/fr x 3 answers
    first = {(r["prompt_id"], r["language"]): r["response"] for r in three if r["sample"] == 0}
    assert first == {(r["prompt_id"], r["language"]): r["response"] for r in one}
    answers = {(r["prompt_id"], r["sample"], r["language"]): r["response"] for r in three}
    assert sum(answers[(p, 1, lang)] != answers[(p, 0, lang)] for p, lang in first) >= len(first) // 2
    # Every answer of every draw was translated, from its own text.
    trans = rows("three", "translations")
    assert len(trans) == 3 * len(rows("one", "translations"))
    assert all(t["source"] == answers[(t["prompt_id"], t["sample"], t["source_language"])] for t in trans)
    # Pairs: the chosen es/fr side came from the English answer of the same draw, the rejected
    # side is that draw's own answer.
    pairs = pq.read_table(runs["three"] / "pairs" / "pairs.parquet").to_pylist()
    native = [p for p in pairs if p["language"] != "en"]
    assert {p["sample"] for p in native} == {0, 1, 2}
    for p in native:
        assert p["chosen_origin"] == answers[(p["prompt_id"], p["sample"], "en")]
        assert p["rejected"][0]["content"] == answers[(p["prompt_id"], p["sample"], p["language"])]
    # The stage and the report say how many kept pairs the extra answers brought.
    stats = read_json(runs["three"] / "pairs" / "_done.json")["languages"]
    assert {lang: s["kept_sampled"] for lang, s in stats.items()} == \
        {lang: sum(1 for p in pairs if p["language"] == lang and p["sample"]) for lang in stats}
    report = subprocess.run([sys.executable, "-m", "lidr", "report", str(tmp_path / "three")],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "three" / "report.md").read_text()
    assert "| iteration | language | kept | of them from sampled answers | dropped |" in text
    assert f"| 1 | es | {stats['es']['kept']} | {stats['es']['kept_sampled']} |" in text


def test_a_run_with_the_agreement_gate_translates_only_agreeing_draws(tmp_path, translating_model_dir):
    """A real run (three answers, agreement 2, word problems and instructions in one block):
    the translation stage asks for no draw of a word problem that the gate drops, every other
    answer is translated, and the pairs stage counts the skipped draws under the gate."""
    instructions = write_prompt_set(tmp_path / "prompts", n=2)
    mix = {"mix": [{"path": "bundled:arith/train_1/{lang}.jsonl", "text_key": "question", "task": "math", "limit": 3},
                   {"path": str(instructions / "{lang}.jsonl")}]}
    cfg = write_config(tmp_path / "agree.yaml", translating_model_dir, instructions, iterations=1,
                       generation={"engine": "hf", "samples": 3, "sample_temperature": 1.0},
                       pairs={"gates": {"enabled": True, "agreement": 2, "language_id": False, "degenerate": False,
                                        "length_ratio": None, "answer_consistency": False, "drop_cut_off": False}})
    cfg.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "prompts": [mix]}), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "-o", str(tmp_path / "run")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    it = tmp_path / "run" / "iter_1"
    responses = pq.read_table(it / "responses").to_pylist()
    math = frozenset(r["prompt_id"] for r in responses if r["prompt_id"].startswith("train_1-"))
    skip = disagreeing_answers(responses, "en", math, 2)
    assert skip  # a random model's answers rarely end on the same number
    asked = {(t["prompt_id"], t["sample"], t["source_language"]) for t in pq.read_table(it / "translations").to_pylist()}
    expected = {(r["prompt_id"], r["sample"], r["language"]) for r in responses
                if r["response"] and (r["prompt_id"], r["sample"]) not in skip}
    assert asked == expected
    stats = read_json(it / "pairs" / "_done.json")["languages"]
    for lang in ("es", "fr"):
        assert stats[lang]["gates"]["agreement"] == len(skip) and "agreement" not in stats[lang]["dropped"]
    assert stats["en"]["gates"]["agreement"] == 2 * len(skip)  # one English pair per language and draw
