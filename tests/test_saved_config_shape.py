"""Runs saved before each evaluation task kind had its own config class still resume.

Their config.yaml holds every task in the flat shape: each task carried every kind's
fields (`template: mgsm, judge: null, ..., families: []` on an mgsm task). The same
config in today's shape must compare equal in `rundir.check_saved_config`, and parse;
a real change must still be refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lidr.config import ConfigError, load_config, parse_config, to_yaml
from lidr.rundir import check_saved_config
from lidr.store import RunDirError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# The fields every task carried in the flat shape, at the defaults they had there.
FLAT_FIELDS = {"template": "mgsm", "judge": None, "judge_engine": None, "judge_openai": None, "baseline": None,
               "families": []}

# Two tasks exactly as the flat model dumped them (lidr/config.py before the task kinds had
# their own classes), to pin FLAT_FIELDS to the real saved shape.
FLAT_SAVED = {
    "lm_eval": {"task": "lm_eval", "label": None, "data": [], "languages": ["es", "fr"], "limit": 10,
                "max_new_tokens": 256, "batch_size": 16, "template": "mgsm", "judge": None, "judge_engine": None,
                "judge_openai": None, "baseline": None, "families": ["arc", "m_mmlu"]},
    "vs_m0": {"task": "x_alpacaeval", "label": "vs_m0", "data": ["x/{lang}.json"], "languages": None, "limit": None,
              "max_new_tokens": 256, "batch_size": 16, "template": "mgsm", "judge": "judge-model",
              "judge_engine": None, "judge_openai": None, "baseline": "M0", "families": []},
}

# A config with every kind, x_alpacaeval against references (its own judge server) and against M0.
EVERY_KIND = {
    "prompts": [{"path": "p/{lang}.jsonl"}],
    "evaluation": {"tasks": [
        {"task": "x_alpacaeval", "data": ["x/{lang}.json"], "judge": "judge-model", "baseline": "ref/{lang}.json",
         "judge_engine": "openai", "judge_openai": {"base_url": "https://api.example/v1", "api_key_env": "JUDGE_KEY"}},
        {"task": "x_alpacaeval", "label": "vs_m0", "data": ["x/{lang}.json"], "judge": "judge-model",
         "baseline": "M0"},
        {"task": "lm_eval", "families": ["arc", "m_mmlu"], "languages": ["es", "fr"], "limit": 10},
        {"task": "fidelity", "data": ["f/{lang}.jsonl"]},
        {"task": "mgsm", "label": "math", "data": ["m/{lang}.jsonl"], "template": "paper_math"},
    ]},
}


def flat_shape(cfg) -> dict:
    """The config as config.yaml held it in the flat shape."""
    saved = cfg.model_dump(mode="json")
    saved["evaluation"]["tasks"] = [{**FLAT_FIELDS, **t} for t in saved["evaluation"]["tasks"]]
    return saved


def configs_with_tasks():
    shipped = [load_config(p)[0] for p in sorted(CONFIGS.glob("*.yaml"))]
    return [c for c in shipped if c.evaluation.tasks] + [parse_config(EVERY_KIND)]


def check_against(saved: dict, cfg, run_dir: Path) -> None:
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False, allow_unicode=True),
                                         encoding="utf-8")
    check_saved_config(run_dir, cfg, print)


def test_the_flat_shape_fixture_is_the_saved_shape():
    saved = {t["label"] or t["task"]: t for t in flat_shape(parse_config(EVERY_KIND))["evaluation"]["tasks"]}
    assert saved["lm_eval"] == FLAT_SAVED["lm_eval"] and saved["vs_m0"] == FLAT_SAVED["vs_m0"]


@pytest.mark.parametrize("cfg", configs_with_tasks(), ids=lambda c: c.name or "every_kind")
def test_a_run_saved_in_the_flat_shape_resumes(cfg, tmp_path):
    saved = flat_shape(cfg)
    assert saved != cfg.model_dump(mode="json")  # the shapes do differ
    check_against(saved, cfg, tmp_path / "run")  # no RunDirError
    assert parse_config(saved) == cfg  # and the saved file parses to the same config


def test_a_run_saved_in_todays_shape_resumes(tmp_path):
    cfg = parse_config(EVERY_KIND)
    check_against(yaml.safe_load(to_yaml(cfg)), cfg, tmp_path / "run")


def test_another_template_is_still_a_different_config(tmp_path):
    cfg, _ = load_config(CONFIGS / "paper_math.yaml")
    saved = flat_shape(cfg)
    saved["evaluation"]["tasks"][0]["template"] = "mgsm"  # the flat default, but this task's own field
    with pytest.raises(RunDirError, match="keys that differ: evaluation.tasks "):
        check_against(saved, cfg, tmp_path / "run")


def test_another_kinds_field_with_a_value_is_not_dropped(tmp_path):
    cfg = parse_config(EVERY_KIND)
    saved = flat_shape(cfg)
    saved["evaluation"]["tasks"][3]["judge"] = "some-judge"  # set on the fidelity task: not the same config
    with pytest.raises(RunDirError, match="evaluation.tasks"):
        check_against(saved, cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"evaluation\.tasks\.3\.judge: unknown key"):
        parse_config(saved)


def test_a_run_saved_before_an_option_existed_resumes(tmp_path):
    """A config.yaml written before generation.samples existed lacks its keys; the run was made
    with their defaults, so it resumes; a value that really differs is still refused."""
    cfg, _ = load_config(CONFIGS / "evidence_arith_chosen.yaml")
    saved = cfg.model_dump(mode="json")
    del saved["generation"]["samples"], saved["generation"]["sample_temperature"]
    check_against(saved, cfg, tmp_path / "run")  # no RunDirError
    saved["generation"]["max_new_tokens"] = 64
    with pytest.raises(RunDirError, match="keys that differ: generation.max_new_tokens "):
        check_against(saved, cfg, tmp_path / "run2")
