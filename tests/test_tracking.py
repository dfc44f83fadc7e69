"""Training curves and evaluation scalars in TensorBoard, read back with tensorboard's own reader:
a real two-iteration run on the tiny Llama, and training under `accelerate launch`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from huggingface_hub import DatasetCard, ModelCard
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import write_config, write_prompt_set
from lidr.config import TrainingConfig, diff_configs
from lidr.store import read_json, write_parquet_atomic

LANGS = ("en", "es", "fr")


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def lidr(*args):
    return subprocess.run([sys.executable, "-m", "lidr", *args], capture_output=True, text=True, timeout=1500)


def test_run_logs_training_curves_and_eval_per_language_and_iteration(tmp_path, tiny_model_dir):
    prompts = write_prompt_set(tmp_path / "prompts")  # translation requests pair even on a random model
    cfg = write_config(
        tmp_path / "run.yaml", tiny_model_dir, prompts, training={"report_to": "tensorboard", "batch_size": 2},
        generation={"max_new_tokens": 16}, translation={"max_new_tokens": 16},
        evaluation={"tasks": [{"task": "fidelity", "data": [str(prompts / "{lang}.jsonl")], "limit": 2,
                               "max_new_tokens": 8}]})
    run_dir = tmp_path / "run"
    res = lidr("run", str(cfg), "-o", str(run_dir))
    assert res.returncode == 0, res.stderr[-3000:]

    # One TensorBoard view for the run: a training curve per iteration, on the trainer's tags.
    assert sorted(p.name for p in (run_dir / "tb").iterdir()) == ["eval", "iter_1", "iter_2"]
    for t in (1, 2):
        curves = scalars(run_dir / "tb" / f"iter_{t}")
        steps = read_json(run_dir / f"iter_{t}" / "train" / "_done.json")["history"]
        assert [s for s, _ in curves["train/loss"]] == [h["step"] for h in steps]
        assert [v for _, v in curves["train/loss"]] == pytest.approx([h["loss"] for h in steps])
        assert "train/rewards/margins" in curves

    # Evaluation: one scalar per language and model, step = iteration, equal to the result files.
    evals = scalars(run_dir / "tb" / "eval")
    for lang in LANGS:
        points = evals[f"eval/fidelity/fidelity/{lang}"]
        assert [s for s, _ in points] == [0, 1, 2]
        for t, value in points:
            saved = read_json(run_dir / f"iter_{t}" / "eval" / "fidelity.json")["languages"][lang]["fidelity"]
            assert value == pytest.approx(saved)
    assert not any(tag.endswith(("/n", "/standard_error")) for tag in evals)

    # The same run documents its models and pairs: cards rewritten after evaluation.
    for t in (1, 2):
        card = ModelCard.load(run_dir / f"iter_{t}" / "model" / "README.md")
        assert card.data.tags == ["lidr", "dpo", "multilingual"] and card.data.language == list(LANGS)
        for lang in LANGS:
            assert f"| fidelity | fidelity | {lang} |" in card.text
        pairs_card = DatasetCard.load(run_dir / f"iter_{t}" / "pairs" / "README.md")
        assert pairs_card.data.configs == [{"config_name": "default", "data_files": "pairs.parquet"}]


def test_launched_training_logs_on_the_main_rank_only(tmp_path, tiny_model_dir):
    from lidr.stages.train_launch import train_launched

    rows = [{"prompt": [{"role": "user", "content": f"Di {w}."}], "chosen": [{"role": "assistant", "content": w}],
             "rejected": [{"role": "assistant", "content": w.upper() + "!"}]}
            for w in ("hola", "adiós", "gracias", "sí")]
    pairs = tmp_path / "pairs.parquet"
    write_parquet_atomic(pairs, rows)
    cfg = TrainingConfig(batch_size=1, max_length=64, learning_rate=1e-3, warmup_ratio=0.0, report_to="tensorboard",
                         accelerate_config="cpu_ddp", num_processes=2)
    log_dir = tmp_path / "tb" / "iter_1"
    summary = train_launched(str(tiny_model_dir), pairs, tmp_path / "model", cfg, tmp_path / "work",
                             log_dir=log_dir, run_name="x-iter1")
    assert summary["processes"] == 2 and summary["steps"] == 2
    # Two ranks trained; one wrote events.
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 1
    assert [s for s, _ in scalars(log_dir)["train/loss"]] == [1, 2]


def test_tracking_off_and_a_missing_tracker(tmp_path, tiny_model_dir):
    from lidr.stages.train import train_dpo

    rows = [{"prompt": [{"role": "user", "content": "Di hola."}], "chosen": [{"role": "assistant", "content": "Hola."}],
             "rejected": [{"role": "assistant", "content": "Hello."}]}]
    pairs = tmp_path / "pairs.parquet"
    write_parquet_atomic(pairs, rows)
    cfg = TrainingConfig(batch_size=1, max_length=64, warmup_ratio=0.0, report_to="none")
    train_dpo(str(tiny_model_dir), pairs, tmp_path / "model", cfg, tmp_path / "work", log_dir=tmp_path / "tb")
    assert not (tmp_path / "tb").exists()

    # A tracker named but not installed is refused before anything runs, naming the key.
    prompts = write_prompt_set(tmp_path / "prompts", n=2)
    bad = write_config(tmp_path / "bad.yaml", tiny_model_dir, prompts, training={"report_to": "wandb"})
    res = lidr("run", str(bad), "-o", str(tmp_path / "never"))
    assert res.returncode == 2 and "training.report_to" in res.stderr and "wandb" in res.stderr
    assert not (tmp_path / "never").exists()


def test_report_to_may_change_when_a_run_resumes():
    a = {"training": {"report_to": "tensorboard", "beta": 0.1}}
    assert diff_configs(a, {"training": {"report_to": "none", "beta": 0.1}}) == []
    assert diff_configs({"training": {"beta": 0.1}}, {"training": {"report_to": "auto", "beta": 0.1}}) == []
    assert diff_configs(a, {"training": {"report_to": "none", "beta": 0.2}}) == ["training.beta"]
