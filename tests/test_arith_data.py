"""The bundled arith family: sizes, alignment, gold answers, template disjointness,
determinism, language of the questions, and the readers that consume it."""

import itertools
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from lidr.config import PromptSource
from lidr.data.arith import ArithError, available_languages, generate, load_language, load_spec
from lidr.data.prompts import load_aligned
from lidr.text.langid import detect_language
from lidr.evaluate.tasks.mgsm import load_math_items

ARITH = Path(__file__).resolve().parents[1] / "src" / "lidr" / "data" / "arith"
SPEC = yaml.safe_load((ARITH / "spec.yaml").read_text(encoding="utf-8"))
LANGS = ["en", "es", "fr", "de", "ru"]
MIN_SIZES = {"train_1": 300, "train_2": 300, "dev": 150, "test": 300, "dev_2": 150, "train_3": 300, "train_4": 300,
             "train_5": 300, "train_6": 300, "train_7": 300, "train_8": 300}
TRAIN = tuple(f"train_{i}" for i in range(1, 9))


def rows(split, lang):
    with (ARITH / split / f"{lang}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("split", MIN_SIZES)
def test_split_sizes_and_alignment(split):
    by_lang = {lang: rows(split, lang) for lang in LANGS}
    assert len(by_lang["en"]) >= MIN_SIZES[split]
    en = by_lang["en"]
    assert len({r["id"] for r in en}) == len(en)
    for lang, lang_rows in by_lang.items():
        assert [r["id"] for r in lang_rows] == [r["id"] for r in en], lang
        # Same problem everywhere: template, numbers, people and object, answer.
        for key in ("template", "numbers", "slots", "answer"):
            assert [r[key] for r in lang_rows] == [r[key] for r in en], (lang, key)


@pytest.mark.parametrize("lang", LANGS)
def test_localised_names_and_numbers_are_in_the_question(lang):
    wording = yaml.safe_load((ARITH / "templates" / f"{lang}.yaml").read_text(encoding="utf-8"))
    for split in MIN_SIZES:
        for r in rows(split, lang):
            q = r["question"]
            for slot, ref in r["slots"].items():
                forms = wording["objects" if slot == "obj" else "names"][ref]
                forms = [forms] if isinstance(forms, str) else [v for k, v in forms.items() if k != "gender"]
                assert any(re.search(rf"\b{f}\b", q) for f in forms), (r["id"], slot, q)
            shown = re.findall(r"\d+", q)
            assert sorted(shown) == sorted(str(v) for v in r["numbers"].values()), (r["id"], q)


def test_gold_answers_recomputed_from_the_numbers():
    """Recompute with plain Python over the spec's formula, not with the generator's evaluator."""
    for split in MIN_SIZES:
        for r in rows(split, "en"):
            formula = SPEC["templates"][r["template"]]["answer"]
            value = eval(formula, {"__builtins__": {}}, dict(r["numbers"]))  # noqa: S307 (our own spec)
            assert value == int(value) and value > 0, (r["id"], formula, r["numbers"])
            assert r["answer"] == str(int(value)), (r["id"], formula, r["numbers"], r["answer"])


def test_template_groups_are_disjoint_and_large_enough():
    used = {split: Counter(r["template"] for r in rows(split, "en")) for split in MIN_SIZES}
    held_out = ("dev", "test", "dev_2")
    groups = {"train": set().union(*(used[t] for t in TRAIN))} | {s: set(used[s]) for s in held_out}
    for a, b in itertools.combinations(groups, 2):
        assert not groups[a] & groups[b], (a, b)
    assert len(groups["train"]) >= 12 and len(groups["test"]) >= 6
    assert len(groups["dev"]) >= 5 and len(groups["dev_2"]) >= 5
    # Different wording, not only different numbers: no held-out question shares its
    # number-free skeleton with a question of another group.
    for lang in LANGS:
        def skeletons(*splits):
            return {re.sub(r"\d+", "N", r["question"]) for s in splits for r in rows(s, lang)}
        sk = {"train": skeletons(*TRAIN)} | {s: skeletons(s) for s in held_out}
        for a, b in itertools.combinations(sk, 2):
            assert not sk[a] & sk[b], (lang, a, b)


def test_training_blocks_are_different_problems():
    keys = {split: {(r["template"], json.dumps(r["numbers"]), json.dumps(r["slots"])) for r in rows(split, "en")}
            for split in MIN_SIZES}
    for a, b in itertools.combinations(TRAIN, 2):
        assert len(keys[a]) == len(rows(a, "en"))
        assert not keys[a] & keys[b], (a, b)


def test_questions_have_no_unfilled_placeholder():
    for split in MIN_SIZES:
        for lang in LANGS:
            for r in rows(split, lang):
                assert not re.search(r"[{}@]|\b(None|pl|sg)\b", r["question"]), (lang, r["id"], r["question"])


@pytest.mark.parametrize("lang", LANGS)
def test_questions_are_in_their_language(lang):
    for split in MIN_SIZES:
        qs = [r["question"] for r in rows(split, lang)]
        share = sum(detect_language(q)[0] == lang for q in qs) / len(qs)
        assert share >= 0.95, (split, lang, share)


def test_regenerating_gives_the_committed_bytes(tmp_path):
    out = tmp_path / "arith"
    proc = subprocess.run([sys.executable, "-m", "lidr.data.arith", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.relative_to(out) for p in out.rglob("*.jsonl"))
    assert written == sorted(p.relative_to(ARITH) for p in ARITH.rglob("*.jsonl"))
    for rel in written:
        assert (out / rel).read_bytes() == (ARITH / rel).read_bytes(), rel


def test_another_seed_gives_other_problems(tmp_path):
    generate(tmp_path, seed=1, languages=["en"])
    assert (tmp_path / "dev" / "en.jsonl").read_bytes() != (ARITH / "dev" / "en.jsonl").read_bytes()


def test_readers_of_the_pipeline_and_of_evaluation_accept_the_files():
    items = load_math_items(ARITH / "dev" / "es.jsonl")
    assert items[0] == {"id": rows("dev", "es")[0]["id"], "question": rows("dev", "es")[0]["question"],
                        "gold": rows("dev", "es")[0]["answer"], "template": rows("dev", "es")[0]["template"]}
    src = PromptSource(path="bundled:arith/train_1/{lang}.jsonl", text_key="question")
    aligned = load_aligned(src, LANGS, None)
    assert [p.text for p in aligned["de"]] == [r["question"] for r in rows("train_1", "de")]


def test_languages_are_the_template_files():
    assert available_languages()[0] == "en"
    assert set(LANGS) <= set(available_languages())


def test_a_word_without_its_gender_forms_is_refused(tmp_path):
    bad_dir = tmp_path / "templates"
    bad_dir.mkdir()
    text = (ARITH / "templates" / "es.yaml").read_text(encoding="utf-8")
    (bad_dir / "es.yaml").write_text(text.replace("Cuantos: {m: Cuántos, f: Cuántas}", "Cuantos: {m: Cuántos}"),
                                     encoding="utf-8")
    with pytest.raises(ArithError, match=r"es\.yaml: templates\.add_more: \{Cuantos@obj\} has no wording for "
                                         r"p=f1, obj=apple, n=1 \(missing 'f'\)"):
        load_language("es", load_spec(), bad_dir)


def test_a_broken_language_file_is_a_one_line_error_exit_2_and_writes_nothing(tmp_path):
    bad_dir = tmp_path / "templates"
    bad_dir.mkdir()
    text = (ARITH / "templates" / "en.yaml").read_text(encoding="utf-8")
    (bad_dir / "en.yaml").write_text(text.replace("{He@p} buys {b} more.", "{He@p} buys more."), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lidr.data.arith", "--out", str(out), "--templates", str(bad_dir)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert re.fullmatch(r"error: \S+en\.yaml: templates\.add_more: shows the numbers \['a'\], "
                        r"the answer uses \['a', 'b'\]\n", proc.stderr), proc.stderr
    assert not out.exists()


def test_russian_nouns_agree_with_their_numbers():
    from lidr.data.arith.generate import Problem, render

    spec = load_spec()
    ru = load_language("ru", spec)
    numbers = (1, 2, 4, 5, 11, 12, 21, 22, 25, 111, 112)
    assert [ru.category(n) for n in numbers] == [
        "one", "few", "few", "many", "many", "many", "one", "few", "many", "many", "many"]
    tpl = spec.templates["unit_price"]
    text = {b: render(Problem(tpl, {"a": 21, "b": b}, {"p": "f1", "obj": "pear"}, 21 * b), ru, spec)
            for b in (2, 5, 21)}
    assert text[21] == "Одна груша стоит 21 рубль. Анна покупает 21 грушу. Сколько рублей платит Анна?"
    assert "покупает 2 груши." in text[2] and "покупает 5 груш." in text[5]
