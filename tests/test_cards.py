"""Model and dataset cards, read back with huggingface_hub's own loaders, on a run directory
written by hand around a real model directory (the cards of a real run: test_tracking.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, ModelCard

from lidr.cards import write_iteration_cards
from lidr.config import BUNDLED_MODEL, parse_config
from lidr.evaluate.base import write_result
from lidr.evaluate.stats import Z95, wilson_interval
from lidr.store import write_json_atomic, write_parquet_atomic

PAIRS_DONE = {"n": 5, "gates_enabled": True, "seconds": 0.1, "languages": {
    "en": {"kept": 2, "dropped": {"translation_failed": 3}, "gates": {"language_id": 4}},
    "es": {"kept": 2, "dropped": {"identical": 1}, "gates": {}},
    "fr": {"kept": 1, "dropped": {}, "gates": {"cut_off": 2}}}}
TRAIN_DONE = {"pairs": 5, "steps": 2, "seconds": 3.0, "history": [
    {"step": 1, "loss": 1.25, "margin": 0.0}, {"step": 2, "loss": 1.1, "margin": 0.125}]}


def config(model: str = BUNDLED_MODEL):
    return parse_config({
        "model": model, "languages": ["es", "fr"], "iterations": 2,
        "prompts": [{"hub": "someorg/aligned-prompts", "hub_config": "{lang}"}],
        "training": {"learning_rate": 5e-6, "batch_size": 8}})


def write_iteration(run_dir: Path, model_src: Path, t: int = 1) -> Path:
    it = run_dir / f"iter_{t}"
    shutil.copytree(model_src, it / "model")
    write_json_atomic(it / "pairs" / "_done.json", PAIRS_DONE)
    rows = [{"prompt_id": "p0", "language": lang, "prompt": [{"role": "user", "content": "x"}],
             "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}
            for lang in ("en", "en", "es", "es", "fr")]
    write_parquet_atomic(it / "pairs" / "pairs.parquet", rows)
    write_json_atomic(it / "train" / "_done.json", TRAIN_DONE)
    return it


def body_row(text: str, *cells: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| " + " | ".join(cells) + " |"))


def test_model_card_metadata_body_and_evaluation_table(tmp_path, tiny_model_dir):
    run_dir, cfg = tmp_path / "run", config()
    it = write_iteration(run_dir, tiny_model_dir)
    written = write_iteration_cards(run_dir, cfg, 1)
    assert written == [it / "pairs" / "README.md", it / "model" / "README.md"]

    card = ModelCard.load(it / "model" / "README.md")
    data = card.data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["language"] == ["en", "es", "fr"]
    assert data["license"] == "apache-2.0"  # from the bundled GGUF's metadata
    assert data["tags"] == ["lidr", "dpo", "multilingual"]
    assert data["datasets"] == ["someorg/aligned-prompts"]
    assert "iteration 1 of 2" in card.text and "trained from bundled:smollm2-135m-instruct" in card.text
    assert body_row(card.text, "learning rate") == "| learning rate | 5e-06 |"
    assert body_row(card.text, "en") == "| en | 2 | 7 | translation_failed 3, gate language_id 4 |"
    assert "Not evaluated yet" in card.text

    # After evaluation the card is rewritten with the model's results and their intervals.
    write_result(it / "eval", "mgsm", "M1", {"es": {"n": 20, "correct": 9, "accuracy": 0.45, "off_target": 0.1}})
    write_result(it / "eval", "x_alpacaeval", "M1", {"es": {"n": 805, "win_rate": 22.18, "standard_error": 1.4}})
    (it / "eval" / "mgsm_outputs.json").write_text(json.dumps([{"response": "raw"}]))  # not a result
    write_iteration_cards(run_dir, cfg, 1)
    card = ModelCard.load(it / "model" / "README.md")
    lo, hi = wilson_interval(9, 20)
    assert body_row(card.text, "mgsm", "accuracy", "es") == f"| mgsm | accuracy | es | 0.450 | [{lo:.3f}, {hi:.3f}] | 20 |"
    lo, hi = wilson_interval(2, 20)
    assert body_row(card.text, "mgsm", "off_target", "es").endswith(f"| [{lo:.3f}, {hi:.3f}] | 20 |")
    half = Z95 * 1.4
    assert body_row(card.text, "x_alpacaeval", "win_rate", "es") == \
        f"| x_alpacaeval | win_rate | es | 22.180 | [{22.18 - half:.3f}, {22.18 + half:.3f}] | 805 |"
    assert "Not evaluated yet" not in card.text


def test_dataset_card_of_the_pairs(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    it = write_iteration(run_dir, tiny_model_dir)
    write_iteration_cards(run_dir, config(), 1)
    card = DatasetCard.load(it / "pairs" / "README.md")
    data = card.data.to_dict()
    assert data["language"] == ["en", "es", "fr"]
    assert data["tags"] == ["lidr", "dpo", "multilingual", "preference"]
    assert data["configs"] == [{"config_name": "default", "data_files": "pairs.parquet"}]
    for column in ("prompt_id", "language", "prompt", "chosen", "rejected"):
        assert f"- `{column}`:" in card.text
    assert body_row(card.text, "fr") == "| fr | 1 | 2 | gate cut_off 2 |"
    assert "5 pairs, quality gates on" in card.text


def test_local_base_model_license_and_no_base_model_id(tmp_path, tiny_model_dir):
    base = tmp_path / "my-model"
    shutil.copytree(tiny_model_dir, base)
    (base / "README.md").write_text("---\nlicense: mit\n---\n# my model\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    it = write_iteration(run_dir, tiny_model_dir)
    write_iteration_cards(run_dir, config(str(base)), 1)
    data = ModelCard.load(it / "model" / "README.md").data.to_dict()
    assert data["license"] == "mit" and "base_model" not in data


def test_a_card_error_is_logged_and_leaves_files_as_they_were(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    it = write_iteration(run_dir, tiny_model_dir)
    # An iteration without pairs hard-links the previous model's files, its card included.
    previous = tmp_path / "previous_card.md"
    previous.write_text("the previous model's card\n", encoding="utf-8")
    os.link(previous, it / "model" / "README.md")
    (it / "train" / "_done.json").write_text("{not json", encoding="utf-8")  # damaged summary
    messages: list[str] = []
    written = write_iteration_cards(run_dir, config(), 1, log=messages.append)
    assert written == [it / "pairs" / "README.md"]  # the dataset card does not depend on it
    assert len(messages) == 1 and str(it / "model") in messages[0]
    assert (it / "model" / "README.md").read_text(encoding="utf-8") == "the previous model's card\n"

    (it / "train" / "_done.json").write_text(json.dumps(TRAIN_DONE), encoding="utf-8")
    assert write_iteration_cards(run_dir, config(), 1)[-1] == it / "model" / "README.md"
    # Replaced by rename: the linked file of the previous model is untouched.
    assert previous.read_text(encoding="utf-8") == "the previous model's card\n"
    assert ModelCard.load(it / "model" / "README.md").data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("spec, expected", [
    ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-8B-Instruct"),
    ("./models/x", None), ("/abs/model", None), ("a/b/c", None), (BUNDLED_MODEL, "HuggingFaceTB/SmolLM2-135M-Instruct"),
])
def test_base_model_id(spec, expected):
    from lidr.cards import base_model_id

    assert base_model_id(spec) == expected
