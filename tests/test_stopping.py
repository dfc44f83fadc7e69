"""`iterations: auto`: real runs on the tiny Llama that stop when the dev gain is below
min_gain or at max_iterations, resume exactly, and say why in stopping.json, the summary,
`lidr status` and report.md; and the config errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from helpers import write_config, write_prompt_set

from lidr.config import ConfigError, load_config
from lidr.store import read_json

DEV = "bundled:arith/dev/{lang}.jsonl"


def lidr(*args):
    return subprocess.run([sys.executable, "-m", "lidr", *args], capture_output=True, text=True)


def auto_config(tmp_path, model, **over):
    # A dev set of 2 arithmetic items per language, answered in 8 tokens: seconds per model.
    dev = {"task": "mgsm", "label": "dev", "data": [DEV], "limit": 2, "max_new_tokens": 8, "batch_size": 8}
    fields = {"iterations": "auto", "max_iterations": 2, "evaluation": {"tasks": [dev]},
              "stopping": {"task": "dev"}, **over}
    return write_config(tmp_path / "run.yaml", model, write_prompt_set(tmp_path / "prompts", 3), **fields)


def test_stops_when_the_dev_gain_is_below_min_gain(tmp_path, tiny_model_dir):
    # No model can gain 2 points of accuracy: the run stops after its first iteration.
    cfg = auto_config(tmp_path, tiny_model_dir, stopping={"task": "dev", "min_gain": 2.0})
    run_dir = tmp_path / "run"
    done = lidr("run", str(cfg), "--output", str(run_dir))
    assert done.returncode == 0, done.stderr[-3000:]

    record = read_json(run_dir / "stopping.json")
    assert record["stopped_after"] == 1 and record["decided_through"] == 1
    assert record["rule"]["languages"] == ["es", "fr"] and record["rule"]["max_iterations"] == 2
    (gain,) = record["gains"]
    m0, m1 = (read_json(run_dir / f"iter_{t}" / "eval" / "dev.json")["languages"] for t in (0, 1))
    mean = [(m["es"]["accuracy"] + m["fr"]["accuracy"]) / 2 for m in (m0, m1)]
    assert gain["before"] == pytest.approx(mean[0], abs=1e-4) and gain["after"] == pytest.approx(mean[1], abs=1e-4)
    assert gain["n"] == 4 and len(gain["gain_ci"]) == 2  # 2 items x 2 languages, paired
    assert record["reason"].startswith(f"gain {gain['gain']:+.3f} < min_gain 2 ")
    assert "dev accuracy, mean es/fr" in record["reason"]
    assert record["final"]["iteration"] in (0, 1)
    # Iteration 2 never started; the summary and the report say why.
    assert (run_dir / "iter_1" / "model" / "config.json").is_file() and not (run_dir / "iter_2").exists()
    assert f"stopped after iteration 1: {record['reason']}" in done.stdout
    report = (run_dir / "report.md").read_text()
    assert "## Stopping" in report and f"**Stopped after iteration 1:** {record['reason']}" in report
    assert f"**Final model: M{record['final']['iteration']}**" in report

    # The finished run, re-run, starts nothing new; `lidr status` shows the same reason.
    again = lidr("run", str(cfg), "--output", str(run_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "shard" not in again.stderr and "evaluating" not in again.stderr and not (run_dir / "iter_2").exists()
    status = lidr("status", str(run_dir))
    assert status.returncode == 0 and f"stopped after iteration 1: {record['reason']}" in status.stdout


def test_runs_to_max_iterations_and_resumes(tmp_path, tiny_model_dir):
    # Every gain passes min_gain -1: the run goes on to max_iterations and says so.
    cfg = auto_config(tmp_path, tiny_model_dir, stopping={"task": "dev", "min_gain": -1.0})
    run_dir = tmp_path / "run"
    first = lidr("run", str(cfg), "--output", str(run_dir))
    assert first.returncode == 0, first.stderr[-3000:]
    record = read_json(run_dir / "stopping.json")
    assert record["stopped_after"] == 2 and [g["iteration"] for g in record["gains"]] == [1, 2]
    assert record["reason"].startswith("reached max_iterations 2 (last gain")
    assert (run_dir / "iter_2" / "model" / "config.json").is_file() and not (run_dir / "iter_3").exists()

    # A run killed after M2 was evaluated but before it decided: the resumed run decides the same.
    (run_dir / "stopping.json").unlink()
    resumed = lidr("run", str(cfg), "--output", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "shard" not in resumed.stderr and "evaluating" not in resumed.stderr
    assert read_json(run_dir / "stopping.json") == record
    assert "reached max_iterations 2" in (run_dir / "report.md").read_text()


def write_dev(run_dir, t, es, fr, metric="accuracy"):
    from lidr.evaluate.base import write_result

    langs = {lang: {"n": 100, metric: v} for lang, v in (("en", 0.5), ("es", es), ("fr", fr))}
    write_result(run_dir / f"iter_{t}" / "eval", "dev", f"M{t}", langs)


@pytest.mark.parametrize("metric, scores, stop, gains, final", [
    # 0.15 - 0.14 is one point (not 0.0099...): the run goes on; then -0.02 stops it, and M1 is kept.
    ("accuracy", [(0.14, 0.14), (0.15, 0.15), (0.13, 0.13)], [None, 2], [0.01, -0.02], 1),
    # Lower off_target is better: a fall of 0.05 is a gain; a rise of 0.01 stops, the earlier model kept.
    ("off_target", [(0.30, 0.20), (0.25, 0.15), (0.26, 0.16)], [None, 2], [0.05, -0.01], 1),
    # A tie goes to the earlier model.
    ("accuracy", [(0.10, 0.10), (0.10, 0.10)], [1], [0.0], 0),
    # In-language accuracy (what the method is for) is read like accuracy.
    ("accuracy_in_language", [(0.04, 0.02), (0.08, 0.04), (0.08, 0.045)], [None, 2], [0.03, 0.0025], 2),
])
def test_gain_and_final_model(tmp_path, metric, scores, stop, gains, final):
    from lidr import stopping
    from lidr.config import parse_config

    dev = {"task": "mgsm", "label": "dev", "data": [DEV]}
    cfg = parse_config({"iterations": "auto", "languages": ["es", "fr"], "prompts": [{"path": "p/{lang}.jsonl"}],
                        "evaluation": {"tasks": [dev]}, "stopping": {"task": "dev", "metric": metric}})
    for t, (es, fr) in enumerate(scores):
        write_dev(tmp_path, t, es, fr, metric)
    for t in range(1, len(scores)):
        record = stopping.decide(tmp_path, cfg, t)
        assert record["stopped_after"] == stop[t - 1]
    assert [g["gain"] for g in record["gains"]] == pytest.approx(gains)
    assert record["final"]["iteration"] == final
    assert record["final"]["model"] == ("bundled:smollm2-135m-instruct" if final == 0 else f"iter_{final}/model")


@pytest.mark.parametrize("over, message", [
    ({}, "(top level): iterations: auto needs a stopping section"),
    ({"stopping": {"task": "test"}}, "stopping.task 'test' is not an evaluation task's label (evaluation.tasks: dev)"),
    ({"stopping": {"task": "dev", "metric": "win_rate"}}, "stopping.metric 'win_rate' is not a mgsm metric"),
    ({"stopping": {"task": "dev"}, "iterations": 2}, "stopping is only read with iterations: auto"),
    ({"stopping": {"task": "dev"}, "prompts": [{"path": "a/{lang}.jsonl"}] * 2, "max_iterations": 3},
     "prompts has 2 blocks for max_iterations 3"),
    ({"stopping": {"task": "dev"}, "iterations": "often"},
     "iterations: expected a whole number from 1 to 100, or auto"),
])
def test_config_errors(tmp_path, over, message):
    dev = {"task": "mgsm", "label": "dev", "data": [DEV]}
    fields = {"model": "model", "prompts": [{"path": "p/{lang}.jsonl"}], "iterations": "auto",
              "evaluation": {"tasks": [dev]}, **over}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"invalid config {path}: ")


def test_config_error_exits_2_and_writes_nothing(tmp_path):
    path = write_config(tmp_path / "run.yaml", "model", tmp_path, iterations="auto")
    out = lidr("run", str(path), "--output", str(tmp_path / "run"))
    assert out.returncode == 2 and "iterations: auto needs a stopping section" in out.stderr
    assert not (tmp_path / "run").exists()


def test_auto_defaults_to_five_iterations_at_most(tmp_path):
    dev = {"task": "mgsm", "label": "dev", "data": [DEV]}
    path = write_config(tmp_path / "run.yaml", "model", tmp_path, iterations="auto",
                        evaluation={"tasks": [dev]}, stopping={"task": "dev"})
    cfg, _ = load_config(path)
    assert (cfg.max_iterations, cfg.last_iteration, cfg.stopping.min_gain, cfg.stopping.metric) == \
        (5, 5, 0.01, "accuracy")
    assert json.loads(cfg.model_dump_json())["max_iterations"] == 5  # written into the run's config.yaml


def test_a_second_worker_stops_with_worker_0(tmp_path, tiny_model_dir):
    # Worker 1 does not evaluate: it waits for worker 0's decision instead of starting iteration 2.
    cfg = auto_config(tmp_path, tiny_model_dir, stopping={"task": "dev", "min_gain": 2.0})
    run_dir = tmp_path / "run"
    workers = [subprocess.Popen([sys.executable, "-m", "lidr", "run", str(cfg), "--output", str(run_dir),
                                 "--worker", str(i), "--workers", "2"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outs):
        assert w.returncode == 0, err[-3000:]
    assert read_json(run_dir / "stopping.json")["stopped_after"] == 1
    assert not (run_dir / "iter_2").exists()
    assert "stopped after iteration 1" in outs[1][0]


def write_chat(run_dir, t, same):
    """A chat dev result with its per-item file: `same` = {lang: [0/1 same_opening per item]}."""
    from lidr.evaluate.base import write_result

    rows = [{"id": str(i), "language": lang, "same_opening": bool(v)} for lang, vs in same.items()
            for i, v in enumerate(vs)]
    out = run_dir / f"iter_{t}" / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "chat_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    langs = {lang: {"n": len(vs), "same_opening": sum(vs) / len(vs)} for lang, vs in same.items()}
    write_result(out, "chat_dev", f"M{t}", langs, items="chat_items.jsonl")


def guard_config(max_loss):
    from lidr.config import parse_config

    dev = {"task": "mgsm", "label": "dev", "data": [DEV]}
    chat = {"task": "fidelity", "label": "chat_dev", "data": ["chat/{lang}.jsonl"]}
    return parse_config({
        "iterations": "auto", "max_iterations": 4, "languages": ["es", "fr"], "prompts": [{"path": "p/{lang}.jsonl"}],
        "evaluation": {"tasks": [dev, chat]},
        "stopping": {"task": "dev", "min_gain": 0.01,
                     "guards": [{"task": "chat_dev", "metric": "same_opening", "max_loss": max_loss}]}})


def test_a_broken_guard_stops_the_run_and_its_model_is_not_final(tmp_path):
    from lidr import stopping

    # Dev accuracy rises every iteration; so does the share of Spanish answers in one form: M0 1
    # of 10, M1 3 (worse by 0.2), M2 8 (worse by 0.7); French stays at 1. The guard reads the
    # worst language: the mean (worse by 0.35 at M2) would pass max_loss 0.4, Spanish does not.
    for t, (acc, k) in enumerate([(0.10, 1), (0.15, 3), (0.25, 8)]):
        write_dev(tmp_path, t, acc, acc)
        write_chat(tmp_path, t, {"en": [1] + [0] * 9, "es": [1] * k + [0] * (10 - k), "fr": [1] + [0] * 9})
    cfg = guard_config(max_loss=0.4)
    assert stopping.decide(tmp_path, cfg, 1)["stopped_after"] is None  # 0.2 <= 0.4: held
    record = stopping.decide(tmp_path, cfg, 2)
    assert record["stopped_after"] == 2
    assert record["reason"] == ("guard chat_dev same_opening (es): M0 0.100 -> M2 0.800, worse by 0.700 > "
                                "max_loss 0.4")
    g1, g2 = record["guards"]
    assert (g1["iteration"], g1["language"], g1["loss"], g1["held"]) == (1, "es", 0.2, True)
    assert (g2["iteration"], g2["language"], g2["loss"], g2["held"]) == (2, "es", 0.7, False)
    # The loss interval is a paired bootstrap against M0 on Spanish's 10 items, "worse" = positive.
    assert g2["n"] == 10 and 0 < g2["loss_ci"][0] < 0.7 < g2["loss_ci"][1] and g2["p_value"] < 0.05
    # M2 is the best on dev but broke the guard: the final model is M1.
    assert record["final"]["iteration"] == 1 and record["final"]["why"].endswith("within every guard")
    (tmp_path / "stopping.json").write_text(json.dumps(record))
    section = "\n".join(stopping.report_section(tmp_path))
    assert "| chat_dev same_opening | M2 | es | 0.100 | 0.800 | +0.700 |" in section and "**broken**" in section
    assert "**Final model: M1**" in section and "within every guard" in section
    assert any("guard chat_dev same_opening (es): M0 0.100 -> M2 0.800" in line for line in stopping.lines(record))

    # A looser guard holds at M2: the run goes on, and M2 is final.
    record = stopping.decide(tmp_path, guard_config(max_loss=0.8), 2)
    assert record["stopped_after"] is None and record["final"]["iteration"] == 2
    assert [g["held"] for g in record["guards"]] == [True, True]


@pytest.mark.parametrize("guard, message", [
    ({"task": "chat", "metric": "same_opening", "max_loss": 0.1},
     "stopping.guards.0.task 'chat' is not an evaluation task's label (evaluation.tasks: dev, chat_dev)"),
    ({"task": "chat_dev", "metric": "accuracy", "max_loss": 0.1},
     "stopping.guards.0.metric 'accuracy' is not a fidelity metric (expected one of fidelity, degenerate, "
     "same_opening)"),
    ({"task": "chat_dev", "metric": "same_opening", "max_loss": -0.1}, "stopping.guards.0.max_loss"),
    ({"task": "chat_dev", "metric": "same_opening"}, "stopping.guards.0.max_loss"),
])
def test_guard_config_errors(tmp_path, guard, message):
    dev = {"task": "mgsm", "label": "dev", "data": [DEV]}
    chat = {"task": "fidelity", "label": "chat_dev", "data": ["chat/{lang}.jsonl"]}
    fields = {"model": "model", "prompts": [{"path": "p/{lang}.jsonl"}], "iterations": "auto",
              "evaluation": {"tasks": [dev, chat]}, "stopping": {"task": "dev", "guards": [guard]}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def loop_guard_config(tmp_path):
    dev = {"task": "mgsm", "label": "dev", "data": [DEV]}
    fields = {"model": "model", "prompts": [{"path": "p/{lang}.jsonl"}], "iterations": "auto",
              "languages": ["es", "fr"], "evaluation": {"tasks": [dev]},
              "stopping": {"task": "dev", "metric": "accuracy",
                           "guards": [{"task": "dev", "metric": "degenerate", "max_loss": 0.1}]}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    return load_config(path)[0]


def test_a_loop_guard_on_the_math_dev_set(tmp_path):
    """The mgsm task's loop rate can guard a run: a model whose word-problem answers loop more
    than M0's by over max_loss in a language is not kept, however its accuracy rose."""
    from lidr import stopping

    cfg = loop_guard_config(tmp_path)
    from lidr.evaluate.base import write_result

    # Accuracy rises at M1; French loops 0.10 -> 0.40 (worse by 0.3 > 0.1).
    for t, (acc, fr_loops) in enumerate([(0.10, 0.10), (0.20, 0.40)]):
        langs = {lang: {"n": 100, "accuracy": acc, "degenerate": loops}
                 for lang, loops in (("en", 0.1), ("es", 0.1), ("fr", fr_loops))}
        write_result(tmp_path / f"iter_{t}" / "eval", "dev", f"M{t}", langs)
    record = stopping.decide(tmp_path, cfg, 1)
    assert record["stopped_after"] == 1 and record["final"]["iteration"] == 0
    assert record["reason"].startswith("guard dev degenerate (fr): M0 0.100 -> M1 0.400")


def test_a_loop_guard_reads_m0_results_saved_without_loop_rates(tmp_path):
    """A run resumed from M0 results of an older lidr (no `degenerate` in mgsm.json) still
    guards loops: M0's rate is derived from its saved answers, as the report derives it."""
    from lidr import stopping
    from lidr.evaluate.base import write_result

    cfg = loop_guard_config(tmp_path)
    loop, fine = "Tom tiene 4. " * 30, "Tom tiene 4 manzanas."
    m0 = {lang: {"n": 10, "accuracy": 0.1} for lang in ("en", "es", "fr")}  # no degenerate key
    write_result(tmp_path / "iter_0" / "eval", "dev", "M0", m0)
    rows = [{"id": f"{lang}-{i}", "language": lang, "correct": False,
             "response": loop if (lang == "fr" and i < 1) else fine} for lang in m0 for i in range(10)]
    (tmp_path / "iter_0" / "eval" / "dev_generations.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # M1: French loops 0.1 -> 0.4 (derived M0 value), worse by 0.3 > max_loss 0.1.
    m1 = {lang: {"n": 10, "accuracy": 0.2, "degenerate": 0.4 if lang == "fr" else 0.0} for lang in m0}
    write_result(tmp_path / "iter_1" / "eval", "dev", "M1", m1)
    record = stopping.decide(tmp_path, cfg, 1)
    assert record["reason"].startswith("guard dev degenerate (fr): M0 0.100 -> M1 0.400")
    assert record["final"]["iteration"] == 0


def test_a_real_run_records_its_guard(tmp_path, tiny_model_dir):
    # A chat dev set of the demo's everyday prompts, scored by the fidelity task, watched by a guard
    # that always holds (max_loss 1): both iterations run, and each model's guard row is M0's and
    # its own same_opening as the fidelity results hold them.
    chat = {"task": "fidelity", "label": "chat_dev", "data": ["bundled:demo/iter_1/{lang}.jsonl"], "limit": 3,
            "max_new_tokens": 8, "batch_size": 8}
    dev = {"task": "mgsm", "label": "dev", "data": [DEV], "limit": 2, "max_new_tokens": 8, "batch_size": 8}
    cfg = auto_config(tmp_path, tiny_model_dir, evaluation={"tasks": [dev, chat]},
                      stopping={"task": "dev", "min_gain": -1.0,
                                "guards": [{"task": "chat_dev", "metric": "same_opening", "max_loss": 1.0}]})
    run_dir = tmp_path / "run"
    dry = lidr("run", str(cfg), "--output", str(run_dir), "--dry-run")
    assert "or when chat_dev same_opening is worse than M0's by more than 1" in dry.stdout, dry.stdout
    done = lidr("run", str(cfg), "--output", str(run_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_json(run_dir / "stopping.json")
    assert record["stopped_after"] == 2 and [g["iteration"] for g in record["guards"]] == [1, 2]
    chat_results = [read_json(run_dir / f"iter_{t}" / "eval" / "chat_dev.json")["languages"] for t in range(3)]
    for g in record["guards"]:  # the worst of es and fr against M0
        value = {lang: [r[lang]["same_opening"] for r in chat_results] for lang in ("es", "fr")}
        loss = {lang: v[g["iteration"]] - v[0] for lang, v in value.items()}
        assert loss[g["language"]] == pytest.approx(max(loss.values()), abs=1e-4)
        assert g["m0"] == pytest.approx(value[g["language"]][0], abs=1e-4)
        assert g["value"] == pytest.approx(value[g["language"]][g["iteration"]], abs=1e-4)
        assert g["held"] and g["n"] == 3
    assert f"| chat_dev same_opening | M2 | {record['guards'][1]['language']} |" in (run_dir / "report.md").read_text()
