"""Evaluation inside a run: two x_alpacaeval tasks (against the GPT-4-turbo references and
head-to-head against M0) side by side on the tiny model, and lm-eval's device."""

from __future__ import annotations

import json

from helpers import write_config, write_prompt_set

from lidr.config import load_config
from lidr.evaluate.tasks.lm_eval import lm_eval_device
from lidr.pipeline import Pipeline
from lidr.summary import run_summary

REFERENCE = "gpt-4-turbo-2024-04-09"


def test_judge_against_references_and_against_m0(tmp_path, tiny_model_dir, shared_data):
    data = shared_data / "x_alpacaeval"
    common = {"task": "x_alpacaeval", "data": [str(data / "{lang}.json")], "judge": str(tiny_model_dir),
              "limit": 2, "max_new_tokens": 8}
    tasks = [{**common, "baseline": str(data / "reference" / REFERENCE / "{lang}.json")},
             {**common, "label": "vs_m0", "baseline": "M0"}]
    cfg_path = write_config(tmp_path / "run.yaml", tiny_model_dir, write_prompt_set(tmp_path / "p", 4),
                            iterations=1, languages=["es"], evaluation={"tasks": tasks})
    cfg, base = load_config(cfg_path)
    run_dir = tmp_path / "run"
    Pipeline(cfg, run_dir, base).run()

    m0, m1 = run_dir / "iter_0" / "eval", run_dir / "iter_1" / "eval"
    # M0 is judged against the references; for the head-to-head it only answers.
    assert json.loads((m0 / "x_alpacaeval.json").read_text())["baseline"] == REFERENCE
    assert not (m0 / "vs_m0.json").exists()
    m0_outputs = json.loads((m0 / "vs_m0" / "x_alpacaeval_outputs" / "es.json").read_text())
    assert [r["generator"] for r in m0_outputs] == ["M0", "M0"]

    # M1 against each baseline, each result under its own name, neither hiding the other.
    refs = json.loads((m1 / "x_alpacaeval.json").read_text())
    h2h = json.loads((m1 / "vs_m0.json").read_text())
    assert refs["baseline"] == REFERENCE and h2h["baseline"] == "M0"
    assert h2h["task"] == "vs_m0" and h2h["kind"] == "x_alpacaeval"
    assert {lang: v["n"] for lang, v in h2h["languages"].items()} == {"en": 2, "es": 2}
    judged = [json.loads(line) for line in (m1 / "vs_m0" / "x_alpacaeval_judgments.jsonl").open()]
    m0_by_id = {r["id"]: r["output"] for r in m0_outputs}
    assert all(j["baseline_output"] == m0_by_id[j["id"]] for j in judged if j["lang"] == "es")
    assert set(run_summary(run_dir)["iter_1"]["eval"]) == {"x_alpacaeval", "vs_m0"}


def test_lm_eval_uses_the_gpu_under_auto(monkeypatch):
    import torch

    assert lm_eval_device("cpu") == "cpu" and lm_eval_device("cuda:1") == "cuda:1"
    assert lm_eval_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what a GPU machine reports
    assert lm_eval_device("auto") == "cuda"
