"""`lidr run --reuse OLD`: an ablation copies the stages it does not change and runs the rest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import write_config, write_prompt_set
from lidr.store import read_json, read_records
from lidr.text.quality import length_ratio

EVAL = {"tasks": [{"task": "mgsm", "label": "dev", "data": ["bundled:arith/dev/{lang}.jsonl"], "limit": 2,
                   "max_new_tokens": 8, "template": "{question}"}]}


def lidr(*args):
    return subprocess.run([sys.executable, "-m", "lidr", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def old_run(tmp_path_factory, translating_model_dir):
    tmp = tmp_path_factory.mktemp("reuse")
    prompts = write_prompt_set(tmp / "prompts", 4)
    cfg = write_config(tmp / "a.yaml", translating_model_dir, prompts, evaluation=EVAL)
    done = lidr("run", str(cfg), "-o", str(tmp / "a"))
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, prompts


def _hash(run_dir, t, stage):
    return read_json(run_dir / f"iter_{t}" / stage / "_done.json")["hash"]


def test_an_ablation_copies_what_it_does_not_change(old_run, translating_model_dir):
    tmp, prompts = old_run
    a, b = tmp / "a", tmp / "b"
    cfg = write_config(tmp / "b.yaml", translating_model_dir, prompts, evaluation=EVAL, name="lr_ablation",
                       training={"learning_rate": 3e-4})
    done = lidr("run", str(cfg), "-o", str(b), "--reuse", str(a))
    assert done.returncode == 0, done.stderr[-3000:]

    # Generation, translation and pairs of iteration 1 and M0's evaluation are A's files.
    assert read_json(b / "reused.json") == {"from": str(a), "copied": [
        "M0 dev", "iteration 1 responses", "iteration 1 translations", "iteration 1 pairs"]}
    assert "iter 1 generate: shard" not in done.stderr and "iter 1 translate: shard" not in done.stderr
    for stage in ("responses", "translations"):
        assert _hash(b, 1, stage) == _hash(a, 1, stage)
    assert (b / "iter_1" / "pairs" / "pairs.parquet").read_bytes() == (a / "iter_1" / "pairs" / "pairs.parquet").read_bytes()
    assert json.loads((b / "iter_0" / "eval" / "dev.json").read_text()) == json.loads((a / "iter_0" / "eval" / "dev.json").read_text())
    # The changed setting and everything after it ran: M1 is trained anew, with another lr.
    weights = "iter_1/model/model.safetensors"
    assert (b / weights).read_bytes() != (a / weights).read_bytes()
    assert "iter 2 generate: shard" in done.stderr
    assert (b / "iter_2" / "model" / "config.json").is_file() and (b / "iter_2" / "eval" / "dev.json").is_file()

    # Run again, it resumes: nothing is copied twice, nothing runs.
    again = lidr("run", str(cfg), "-o", str(b), "--reuse", str(a))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reused from" not in again.stderr and "generate: shard" not in again.stderr
    assert len(read_json(b / "reused.json")["copied"]) == 4


def test_set_changes_settings_of_the_config_for_this_run_which_resumes_with_them(old_run, translating_model_dir):
    """`--set KEY=VALUE` (the way to train one config with several seeds): the run uses and
    saves the changed settings, copies what they do not change, resumes with the same --set,
    and is refused without it, leaving what it wrote as it was."""
    tmp, prompts = old_run
    a, b = tmp / "a", tmp / "seed7"
    args = ("run", str(tmp / "a.yaml"), "-o", str(b), "--reuse", str(a), "--set", "training.seed=7",
            "--set", "training.learning_rate=3e-4", "--set", "iterations=1")
    done = lidr(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = yaml.safe_load((b / "config.yaml").read_text())
    assert (saved["training"]["seed"], saved["training"]["learning_rate"], saved["iterations"]) == (7, 3e-4, 1)
    assert read_json(b / "reused.json")["copied"] == [
        "M0 dev", "iteration 1 responses", "iteration 1 translations", "iteration 1 pairs"]
    weights = "iter_1/model/model.safetensors"
    trained = (b / weights).read_bytes()
    assert trained != (a / weights).read_bytes() and not (b / "iter_2").exists()

    again = lidr(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training on" not in again.stderr and "reused from" not in again.stderr

    plain = lidr("run", str(tmp / "a.yaml"), "-o", str(b))
    assert plain.returncode != 0 and "different config" in plain.stderr
    assert "training.learning_rate" in plain.stderr and "training.seed" in plain.stderr
    assert (b / weights).read_bytes() == trained

    bad = lidr("run", str(tmp / "a.yaml"), "-o", str(tmp / "bad"), "--set", "training.sead=7")
    assert bad.returncode != 0 and "training.sead: unknown key" in bad.stderr and not (tmp / "bad").exists()


def test_the_plan_stops_at_the_first_setting_that_changes_a_stage(old_run, translating_model_dir):
    tmp, prompts = old_run
    a = tmp / "a"

    def plan(name, **over):
        cfg = write_config(tmp / f"{name}.yaml", translating_model_dir, prompts, **{"evaluation": EVAL, **over})
        out = lidr("run", str(cfg), "-o", str(tmp / name), "--reuse", str(a), "--dry-run")
        assert out.returncode == 0, out.stderr[-3000:]
        assert not (tmp / name).exists(), "--dry-run writes nothing"
        return out.stdout

    # A new evaluation task: every stage is copied, and only the new task runs.
    extra = {"tasks": EVAL["tasks"] + [{**EVAL["tasks"][0], "label": "dev3", "limit": 3}]}
    out = plan("more_eval", evaluation=extra)
    assert "M0 dev, iteration 1 responses" in out and "M2 dev\n" in out and "M2 dev3" not in out
    assert "every iteration is copied" in out
    # The pairs' gates: generation is reused; translation too, unless the degenerate gate
    # (which ends looping translations early) changes.
    out = plan("gates", pairs={"gates": {"enabled": False, "length_ratio": [0.2, 5.0]}})
    assert "iteration 1 translations\n" in out and "iteration 1 pairs runs: settings differ " \
        "(pairs.gates.length_ratio)" in out
    out = plan("gates_on", pairs={"gates": {"enabled": True}})
    assert "iteration 1 responses\n" in out and "iteration 1 translations runs: settings differ " \
        "(pairs.gates.enabled)" in out
    # Generation settings change every model's text, M0's evaluation included.
    out = plan("gen", generation={"max_new_tokens": 16, "batch_size": 4, "shard_size": 4})
    assert "reuse from" in out and ": nothing" in out and "generation.max_new_tokens" in out
    # More answers per prompt change the responses, not how M0 answers an evaluation.
    out = plan("samples", generation={"samples": 2, "sample_temperature": 0.7})
    assert "reuse from" in out and ": M0 dev\n" in out and "iteration 1 responses runs: settings differ " \
        "(generation.sample_temperature, generation.samples)" in out


def test_a_run_saved_before_an_option_existed_is_reused(old_run, translating_model_dir):
    """Its config.yaml lacks the keys of options added since (generation.samples): it ran with
    their defaults, so every stage is still copied."""
    tmp, prompts = old_run
    before = tmp / "before_samples"
    shutil.copytree(tmp / "a", before)
    saved = yaml.safe_load((before / "config.yaml").read_text())
    del saved["generation"]["samples"], saved["generation"]["sample_temperature"]
    (before / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False), encoding="utf-8")
    cfg = write_config(tmp / "same.yaml", translating_model_dir, prompts, evaluation=EVAL)
    out = lidr("run", str(cfg), "-o", str(tmp / "same"), "--reuse", str(before), "--dry-run")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "every iteration is copied" in out.stdout


def test_a_config_in_another_folder_that_reads_the_same_files_is_reused_and_resumes(old_run, translating_model_dir):
    """Relative paths are read against each config's folder: `../prompts/{lang}.jsonl` from a
    folder one level down names the old run's prompts, so every stage is copied, and the same
    config resumes the old run. Without the old run's record of its folder the strings are all
    there is to compare, and they differ."""
    tmp, prompts = old_run
    deeper = tmp / "ablations"
    deeper.mkdir(exist_ok=True)
    cfg = write_config(deeper / "moved.yaml", translating_model_dir, prompts, evaluation=EVAL)
    moved = yaml.safe_load(cfg.read_text())
    moved["prompts"] = [{"path": f"../{prompts.name}/{{lang}}.jsonl"}]
    cfg.write_text(yaml.safe_dump(moved, sort_keys=False), encoding="utf-8")
    assert (tmp / "a" / "config_dir.json").is_file()
    out = lidr("run", str(cfg), "-o", str(tmp / "moved"), "--reuse", str(tmp / "a"), "--dry-run")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "every iteration is copied" in out.stdout

    # The moved config also resumes the old run itself (nothing left to do).
    out = lidr("run", str(cfg), "-o", str(tmp / "a"), "--dry-run")
    assert out.returncode == 0 and "different config" not in out.stderr, out.stderr[-3000:]

    unrecorded = tmp / "unrecorded"
    shutil.copytree(tmp / "a", unrecorded)
    (unrecorded / "config_dir.json").unlink()
    out = lidr("run", str(cfg), "-o", str(tmp / "moved2"), "--reuse", str(unrecorded), "--dry-run")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "iteration 1 responses runs: settings differ (prompts.path)" in out.stdout
    out = lidr("run", str(cfg), "-o", str(unrecorded), "--dry-run")
    assert out.returncode != 0 and "different config; keys that differ: prompts " in out.stderr


def test_reuse_of_a_directory_that_holds_no_run_is_refused(tmp_path, old_run, translating_model_dir):
    tmp, prompts = old_run
    cfg = write_config(tmp_path / "c.yaml", translating_model_dir, prompts)
    (tmp_path / "empty").mkdir()
    out = lidr("run", str(cfg), "-o", str(tmp_path / "c"), "--reuse", str(tmp_path / "empty"))
    assert out.returncode != 0 and "--reuse" in out.stderr and "config.yaml" in out.stderr
    assert not (tmp_path / "c").exists()
    (tmp_path / "empty" / "config.yaml").write_text("model: [unclosed\n")
    out = lidr("run", str(cfg), "-o", str(tmp_path / "c"), "--reuse", str(tmp_path / "empty"))
    assert out.returncode != 0 and "is damaged (not valid YAML at line 2" in out.stderr, out.stderr
    assert not (tmp_path / "c").exists()


def test_dominant_ratio_caps_english_pairs_in_a_real_run(old_run, translating_model_dir):
    """`pairs.dominant_ratio` reaches the pairs stage: with the old run's responses and
    translations, English pairs through each language are at most ratio x its own pairs."""
    import pyarrow.parquet as pq

    tmp, prompts = old_run
    a, c = tmp / "a", tmp / "ratio"
    cfg = write_config(tmp / "ratio.yaml", translating_model_dir, prompts, evaluation=EVAL, iterations=1,
                       pairs={"gates": {"enabled": False}, "dominant_ratio": 1.0})
    done = lidr("run", str(cfg), "-o", str(c), "--reuse", str(a))
    assert done.returncode == 0, done.stderr[-3000:]
    before = pq.read_table(a / "iter_1" / "pairs" / "pairs.parquet").to_pylist()
    after = pq.read_table(c / "iter_1" / "pairs" / "pairs.parquet").to_pylist()
    own = {lang: sum(p["language"] == lang and p["via_language"] is None for p in after) for lang in ("es", "fr")}
    via = {lang: sum(p["via_language"] == lang for p in after) for lang in ("es", "fr")}
    via_before = {lang: sum(p["via_language"] == lang for p in before) for lang in ("es", "fr")}
    assert all(via[lang] == min(own[lang], via_before[lang]) for lang in own), (own, via, via_before)
    assert sum(via.values()) < sum(via_before.values()), (via, via_before)  # the cap dropped some
    assert [p for p in after if p["via_language"] is None] == [p for p in before if p["via_language"] is None]
    stats = read_json(c / "iter_1" / "pairs" / "_done.json")["languages"]["en"]
    assert stats["gates"]["dominant_ratio"] == sum(p["via_language"] is not None for p in before) - sum(via.values())


def test_settings_of_one_iteration_change_that_iteration_alone(old_run, translating_model_dir):
    """`per_iteration: {2: ...}` changes iteration 2's pairs only: iteration 1 whole (M1 too)
    and iteration 2's answers and translations are the old run's, copied, and iteration 2's
    pairs follow the setting (no English pairs) where iteration 1's keep theirs."""
    import pyarrow.parquet as pq

    tmp, prompts = old_run
    a, b = tmp / "a", tmp / "it2_only"
    cfg = write_config(tmp / "it2_only.yaml", translating_model_dir, prompts, evaluation=EVAL,
                       per_iteration={2: {"pairs": {"dominant_pairs": False}}})
    dry = lidr("run", str(cfg), "-o", str(b), "--reuse", str(a), "--dry-run")
    assert "iteration 2 changes: pairs.dominant_pairs=False" in dry.stdout, dry.stdout
    done = lidr("run", str(cfg), "-o", str(b), "--reuse", str(a))
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_json(b / "reused.json")["copied"] == [
        "M0 dev", "iteration 1 responses", "iteration 1 translations", "iteration 1 pairs", "iteration 1 train (M1)",
        "M1 dev", "iteration 2 responses", "iteration 2 translations"]

    def languages(run, t):
        return {p["language"] for p in pq.read_table(run / f"iter_{t}" / "pairs" / "pairs.parquet").to_pylist()}

    assert "en" in languages(a, 2) and "en" in languages(b, 1)
    assert languages(b, 2) == languages(a, 2) - {"en"}
    weights = "iter_{}/model/model.safetensors"
    assert (b / weights.format(1)).read_bytes() == (a / weights.format(1)).read_bytes()
    assert (b / weights.format(2)).read_bytes() != (a / weights.format(2)).read_bytes()
    assert yaml.safe_load((b / "config.yaml").read_text())["per_iteration"]["2"]["pairs"] == {"dominant_pairs": False}


def assert_trained_and_reported(run_dir, n_pairs, stats, key, header):
    """Training took every pair, and the report's pairs table has a column `header` with each
    language's `key` count after its kept count."""
    assert read_json(run_dir / "iter_1" / "train" / "_done.json")["pairs"] == n_pairs
    report = lidr("report", str(run_dir))
    assert report.returncode == 0, report.stderr[-3000:]
    table = (run_dir / "report.md").read_text(encoding="utf-8").split("## Preference pairs")[1]
    assert header in table
    for lang in ("es", "fr"):
        assert f"| 1 | {lang} | {stats[lang]['kept']} | {stats[lang][key]} |" in table


def test_language_pairs_reach_training_in_a_real_run(old_run, translating_model_dir):
    """`pairs.language_pairs` (set from the command line): with the old run's responses and
    translations, each xx pair whose chosen side is not much shorter than its English answer
    (`language_pairs_min_ratio`, set to split them) is followed by one whose rejected side is
    that English answer, the summary counts them, and training takes them all."""
    import pyarrow.parquet as pq

    tmp, prompts = old_run
    a, c = tmp / "a", tmp / "language_pairs"
    before = pq.read_table(a / "iter_1" / "pairs" / "pairs.parquet").to_pylist()
    english = {(r["prompt_id"], r["language"]): r["response"] for r in read_records(a / "iter_1" / "responses")}
    own = [p for p in before if p["language"] != "en"]

    def ratio(p):  # the chosen side's length per its English answer's, per language (pairs.py)
        return length_ratio(p["chosen"][0]["content"], english[(p["prompt_id"], "en")], p["language"], "en")

    ratios = sorted(ratio(p) for p in own)
    cut = ratios[len(ratios) // 2]  # the median: some pairs below it, some at or above
    long_enough = [p for p in own if ratio(p) >= cut]
    assert 0 < len(long_enough) < len(own), ratios
    done = lidr("run", str(tmp / "a.yaml"), "-o", str(c), "--reuse", str(a), "--set", "iterations=1",
                "--set", "pairs.language_pairs=true", "--set", f"pairs.language_pairs_min_ratio={cut!r}")
    assert done.returncode == 0, done.stderr[-3000:]
    after = pq.read_table(c / "iter_1" / "pairs" / "pairs.parquet").to_pylist()
    added = [p for p in after if p["rejected_source"] == "en response"]
    assert len(added) == len(long_enough) and len(after) == len(before) + len(long_enough)
    assert {(p["prompt_id"], p["language"]) for p in added} == {(p["prompt_id"], p["language"]) for p in long_enough}
    for p in added:
        assert p["rejected"][0]["content"] == english[(p["prompt_id"], "en")] != p["chosen"][0]["content"]
        assert any(q["prompt"] == p["prompt"] and q["chosen"] == p["chosen"] and q["rejected_source"] == f"{p['language']} response"
                   for q in own)
    stats = read_json(c / "iter_1" / "pairs" / "_done.json")["languages"]
    assert {lang: stats[lang]["language_pairs"] for lang in ("es", "fr")} == {
        lang: sum(p["language"] == lang for p in long_enough) for lang in ("es", "fr")}
    assert_trained_and_reported(c, len(after), stats, "language_pairs", "of them language pairs")



def test_trimmed_rejected_sides_reach_training_in_a_real_run(old_run):
    """`pairs.gates.cut_off_native_rejected=trim` (set from the command line, with the gates on
    and only cut_off among those that read text): with the old run's answers, which all run to
    the token cap, each xx pair keeps its native rejected side cut to the chosen side's length,
    the summary and the report count them, and training takes them."""
    import pyarrow.parquet as pq

    tmp, _ = old_run
    a, d = tmp / "a", tmp / "trim"
    cut = {(r["prompt_id"], r["language"]) for r in read_records(a / "iter_1" / "responses")
           if r["language"] != "en" and r.get("finish_reason") == "length"}
    old = {(p["prompt_id"], p["language"]): p for p in pq.read_table(a / "iter_1" / "pairs" / "pairs.parquet").to_pylist()
           if p["language"] != "en"}
    assert old and set(old) <= cut  # a random model's answers run to the cap
    done = lidr("run", str(tmp / "a.yaml"), "-o", str(d), "--reuse", str(a), "--set", "iterations=1",
                "--set", "pairs.gates.enabled=true", "--set", "pairs.gates.degenerate=false",
                "--set", "pairs.gates.language_id=false", "--set", "pairs.gates.length_ratio=null",
                "--set", "pairs.gates.cut_off_native_rejected=trim")
    assert done.returncode == 0, done.stderr[-3000:]
    after = pq.read_table(d / "iter_1" / "pairs" / "pairs.parquet").to_pylist()
    assert all(p["rejected_trimmed_from"] is None for p in after if p["language"] == "en")  # translations: never
    new = {(p["prompt_id"], p["language"]): p for p in after if p["language"] != "en"}
    assert set(new) == set(old)  # kept, not dropped at the cap
    for key, p in new.items():
        rejected, was = p["rejected"][0]["content"], old[key]["rejected"][0]["content"]
        assert p["chosen"] == old[key]["chosen"] and was.startswith(rejected)
        assert len(rejected) <= len(p["chosen"][0]["content"]) < len(was) == p["rejected_trimmed_from"]
    stats = read_json(d / "iter_1" / "pairs" / "_done.json")["languages"]
    assert {lang: stats[lang]["rejected_trimmed"] for lang in ("es", "fr")} == {
        lang: sum(k[1] == lang for k in new) for lang in ("es", "fr")}
    assert_trained_and_reported(d, len(after), stats, "rejected_trimmed", "of them rejected side trimmed")


# Every translation of this model is one frame of three words: the answer line of docs/EVIDENCE.md.
FRAMES = {"en": "the result is", "es": "el resultado es", "fr": "le résultat est", "de": "das ergebnis ist"}


def test_opening_share_caps_the_chosen_sides_forms_in_a_real_run(tmp_path, smollm2_dir):
    """`pairs.max_opening_share` (set from the command line) reaches the pairs stage: on a run
    whose self-translations are all one frame, the capped run keeps the old pairs with the cap
    applied (one frame pair per language), the summary counts what it dropped, English pairs
    stay, and training takes what is left."""
    import pyarrow.parquet as pq
    from collections import Counter
    from helpers import train_translating_model
    from lidr.stages.pairs import cap_shared_openings
    from lidr.text.quality import opening

    model = train_translating_model(tmp_path / "frame-llama", smollm2_dir, phrases=FRAMES)
    cfg = write_config(tmp_path / "f.yaml", model, write_prompt_set(tmp_path / "prompts", 4), iterations=1)
    a, c = tmp_path / "a", tmp_path / "capped"
    done = lidr("run", str(cfg), "-o", str(a))
    assert done.returncode == 0, done.stderr[-3000:]
    before = pq.read_table(a / "iter_1" / "pairs" / "pairs.parquet").to_pylist()
    forms = Counter((p["language"], opening(p["chosen"][0]["content"])) for p in before if p["language"] != "en")
    assert forms[("es", "el resultado es")] >= 2 and forms[("fr", "le résultat est")] >= 2, forms
    done = lidr("run", str(cfg), "-o", str(c), "--reuse", str(a), "--set", "pairs.max_opening_share=0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    after = pq.read_table(c / "iter_1" / "pairs" / "pairs.parquet").to_pylist()
    expected, dropped = cap_shared_openings(before, "en", 0.5)
    assert after == expected and dropped["es"] > 0 and dropped["fr"] > 0
    for xx in ("es", "fr"):
        mine = Counter(opening(p["chosen"][0]["content"]) for p in after if p["language"] == xx)
        frame = mine[FRAMES[xx]]
        assert frame == 1 or frame <= 0.5 * sum(mine.values()), (xx, mine)
    assert [p for p in after if p["language"] == "en"] == [p for p in before if p["language"] == "en"]
    stats = read_json(c / "iter_1" / "pairs" / "_done.json")["languages"]
    assert {xx: stats[xx]["gates"]["opening_share"] for xx in ("es", "fr")} == {xx: dropped[xx] for xx in ("es", "fr")}
    assert read_json(c / "iter_1" / "train" / "_done.json")["pairs"] == len(after)
