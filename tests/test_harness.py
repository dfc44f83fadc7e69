"""The lm-eval wrapper: task names, the simple_evaluate call, reading lm-eval's results.

lm-eval is optional and its benchmark data live on the hub, which tests cannot reach. The
pure parts are tested always; with lm-eval installed, the task names are checked against
its registry and a real lm-eval run is made on a local task with a tiny model.
"""

from __future__ import annotations

import json
import sys

import pytest

from lidr.evaluate import harness
from lidr.evaluate.harness import (
    TASK_FAMILIES, HarnessError, lm_eval_call, parse_lm_eval_results, run_lm_eval, task_names,
)

LANGS = ["en", "es", "fr", "de", "ru"]

# The shape of `lm_eval.simple_evaluate(...)`'s return value in lm-eval 0.4.13: leaf-task
# entries copied from a real run (local multiple-choice tasks, SmolLM2-135M, then renamed),
# the group entry as lm_eval/api/group.py `Group.aggregate` builds it, the generation
# task's metric keys from mgsm/native_cot (filters strict-match, flexible-extract), and
# "N/A" stderr as evaluator_utils._compute_task_aggregations writes for a single document.
LM_EVAL_RESULTS = {
    "results": {
        "arc_es": {"name": "arc_es", "alias": "arc_es", "sample_len": 3, "acc,none": 0.0,
                   "acc_stderr,none": 0.0, "acc_norm,none": 0.3333, "acc_norm_stderr,none": 0.3333},
        "arc_challenge": {"name": "arc_challenge", "alias": "arc_challenge", "sample_len": 2, "acc,none": 0.5,
                          "acc_stderr,none": 0.5, "acc_norm,none": 0.0, "acc_norm_stderr,none": 0.0},
        "global_mmlu_full_es": {"alias": "global_mmlu_full_es", "name": "global_mmlu_full_es", "sample_len": 40,
                                "acc,none": 0.275, "acc_stderr,none": 0.07,
                                "sample_count": {"acc,none": 40}},
        "global_mmlu_full_es_stem": {"alias": " - stem", "name": "global_mmlu_full_es_stem", "sample_len": 20,
                                     "acc,none": 0.3, "acc_stderr,none": 0.1},
        "mgsm_native_cot_es": {"name": "mgsm_native_cot_es", "alias": "mgsm_native_cot_es", "sample_len": 1,
                               "exact_match,strict-match": 0.0, "exact_match_stderr,strict-match": "N/A",
                               "exact_match,flexible-extract": 1.0,
                               "exact_match_stderr,flexible-extract": "N/A"},
    },
    "group_subtasks": {"global_mmlu_full_es": ["global_mmlu_full_es_stem"]},
    "n-shot": {"arc_es": 0, "arc_challenge": 0, "mgsm_native_cot_es": 0},
    "higher_is_better": {"arc_es": {"acc": True, "acc_norm": True}},
    # Leaf tasks only; the group's n comes from its summed sample_len.
    "n-samples": {"arc_es": {"original": 1172, "effective": 3},
                  "arc_challenge": {"original": 1172, "effective": 2},
                  "global_mmlu_full_es_stem": {"original": 3000, "effective": 20},
                  "mgsm_native_cot_es": {"original": 250, "effective": 1}},
    "config": {"model": "hf", "model_args": "pretrained=/m,dtype=float32", "limit": 3},
    "lm_eval_version": "0.4.13",
}


def test_task_names():
    assert TASK_FAMILIES["global_mmlu"] == "global_mmlu_full_{lang}"
    assert task_names(["m_mmlu", "arc"], ["en", "es", "ru"]) == [
        "m_mmlu_en", "m_mmlu_es", "m_mmlu_ru", "arc_challenge", "arc_es", "arc_ru"]
    assert task_names(["truthfulqa_mc1", "truthfulqa_mc2", "hellaswag"], ["en", "de"]) == [
        "truthfulqa_mc1", "truthfulqa_de_mc1", "truthfulqa_mc2", "truthfulqa_de_mc2", "hellaswag", "hellaswag_de"]
    assert task_names(["global_mmlu", "mgsm_native_cot"], ["fr"]) == ["global_mmlu_full_fr", "mgsm_native_cot_fr"]
    with pytest.raises(HarnessError, match="unknown lm-eval task family 'mmlu'.*m_mmlu"):
        task_names(["mmlu"], ["es"])


def test_lm_eval_call(tmp_path):
    call = lm_eval_call(tmp_path / "model", ["arc_es", "m_mmlu_es"], batch_size=4, limit=10,
                        device="cuda:0", dtype="bfloat16")
    assert call == {
        "model": "hf", "model_args": f"pretrained={tmp_path / 'model'},dtype=bfloat16",
        "tasks": ["arc_es", "m_mmlu_es"], "batch_size": 4, "limit": 10, "device": "cuda:0", "log_samples": True,
    }
    with pytest.raises(HarnessError, match="comma"):
        lm_eval_call("/models/a,b", ["arc_es"], batch_size=1, limit=None, device="cpu", dtype="auto")


def test_parse_lm_eval_results():
    langs = parse_lm_eval_results(LM_EVAL_RESULTS, ["arc", "global_mmlu", "mgsm_native_cot", "hellaswag"],
                                  ["en", "es", "ru"])
    assert set(langs) == {"en", "es"}  # nothing for ru: left out, not zeros
    es = langs["es"]
    assert es["arc_acc"] == 0.0 and es["arc_acc_norm"] == 0.3333
    assert es["global_mmlu_acc"] == 0.275  # the group's aggregate, not a subject's
    assert es["mgsm_native_cot_exact_match_strict_match"] == 0.0
    assert es["mgsm_native_cot_exact_match_flexible_extract"] == 1.0
    assert es["stderr"] == {"arc_acc": 0.0, "arc_acc_norm": 0.3333, "global_mmlu_acc": 0.07}  # "N/A" dropped
    assert es["n_by_family"] == {"arc": 3, "global_mmlu": 40, "mgsm_native_cot": 1}
    assert es["n"] == 44
    assert "sample_len" not in str(es) and "alias" not in es
    assert langs["en"] == {"n": 2, "arc_acc": 0.5, "arc_acc_norm": 0.0,
                           "stderr": {"arc_acc": 0.5, "arc_acc_norm": 0.0}, "n_by_family": {"arc": 2}}


def test_missing_lm_eval_gives_install_hint(monkeypatch, tmp_path):
    # A None entry in sys.modules makes `import lm_eval` raise ImportError: lm-eval absent.
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(HarnessError, match="pip install lm-eval"):
        run_lm_eval(tmp_path / "model", ["arc"], ["es"], tmp_path / "eval")


# ---- with lm-eval installed ------------------------------------------------------------------

@pytest.fixture(scope="module")
def task_manager():
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    return TaskManager()


# Verified against lm-eval 0.4.13's registry: Global-MMLU-Lite has no Russian.
NOT_IN_LM_EVAL = {("global_mmlu_lite", "ru")}


def test_task_names_exist_in_lm_eval(task_manager):
    known = set(task_manager.all_tasks)
    for family in TASK_FAMILIES:
        for lang in LANGS:
            name = task_names([family], [lang])[0]
            assert (name in known) == ((family, lang) not in NOT_IN_LM_EVAL), (family, lang, name)


def _write_local_task(folder, lang, docs):
    """A multiple-choice lm-eval task on a local jsonl file: lm-eval runs without the hub."""
    data = folder / f"{lang}.jsonl"
    data.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    (folder / f"lidrtoy_{lang}.yaml").write_text(
        f"task: lidrtoy_{lang}\n"
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\ntest_split: test\n"
        'doc_to_text: "{{q}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: gold\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n", encoding="utf-8")


def test_run_lm_eval_on_a_local_task(task_manager, tiny_model_dir, tmp_path, monkeypatch):
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    _write_local_task(tasks_dir, "es", [{"q": "¿2+2?", "choices": ["3", "4"], "gold": 1},
                                        {"q": "¿Color del cielo?", "choices": ["azul", "rojo"], "gold": 0},
                                        {"q": "¿Capital de Francia?", "choices": ["París", "Roma"], "gold": 0}])
    _write_local_task(tasks_dir, "fr", [{"q": "2+2 ?", "choices": ["3", "4"], "gold": 1},
                                        {"q": "Couleur du ciel ?", "choices": ["bleu", "rouge"], "gold": 0}])
    monkeypatch.setitem(harness.TASK_FAMILIES, "toy", "lidrtoy_{lang}")  # a family is one line of data
    out = tmp_path / "eval"

    with pytest.raises(HarnessError, match="no task lidrtoy_de"):
        run_lm_eval(tiny_model_dir, ["toy"], ["de"], out, include_path=tasks_dir)

    result = run_lm_eval(tiny_model_dir, ["toy"], ["es", "fr"], out, limit=2, batch_size=2, device="cpu",
                         dtype="float32", include_path=tasks_dir)
    saved = json.loads((out / "lm_eval.json").read_text(encoding="utf-8"))
    assert saved == result and saved["task"] == "lm_eval" and saved["tasks"] == ["lidrtoy_es", "lidrtoy_fr"]
    for lang in ("es", "fr"):
        row = saved["languages"][lang]
        assert row["n"] == 2  # limit=2
        assert 0.0 <= row["toy_acc"] <= 1.0
    raw = json.loads((out / "lm_eval_raw.json").read_text(encoding="utf-8"))
    assert raw["results"]["lidrtoy_es"]["acc,none"] == saved["languages"]["es"]["toy_acc"]
    assert raw["config"]["model_args"] == f"pretrained={tiny_model_dir},dtype=float32"
    samples = (out / "lm_eval_samples" / "lidrtoy_es.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(samples) == 2 and json.loads(samples[0])["doc"]["q"] == "¿2+2?"
