"""Training beyond one process and full weights: LoRA merged into a plain model, and the
same training under `accelerate launch` with 2 CPU processes (gloo), compared with the
in-process path on the same pairs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from lidr.config import TrainingConfig
from lidr.stages.train import train_dpo
from lidr.stages.train_launch import launch_command, train_launched
from lidr.store import write_parquet_atomic

PAIRS = [
    ("¿Cuánto es 3 más 4?", "3 más 4 es 7.", "3 plus 4 is 7."),
    ("Nombra un color.", "Un color es el azul.", "A colour is blue."),
    ("¿Qué animal dice miau?", "El gato dice miau.", "The cat says meow."),
    ("¿Cuántos días tiene una semana?", "Una semana tiene siete días.", "A week has seven days."),
    ("Di hola.", "Hola.", "Hello."),
    ("¿De qué color es el cielo?", "El cielo es azul.", "The sky is blue."),
    ("¿Cuánto es 2 por 5?", "2 por 5 es 10.", "2 times 5 is 10."),
    ("Nombra una fruta.", "La manzana.", "The apple."),
]


@pytest.fixture()
def pairs_file(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in PAIRS]
    path = tmp_path / "pairs.parquet"
    write_parquet_atomic(path, rows)
    return path


def _weights(model_dir) -> dict[str, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _delta(before: dict, after: dict) -> torch.Tensor:
    return torch.cat([(after[k] - before[k]).flatten() for k in sorted(before)])


def test_lora_is_merged_into_a_plain_model(tmp_path, tiny_model_dir, pairs_file):
    cfg = TrainingConfig(learning_rate=1e-3, epochs=1, batch_size=4, max_length=64, warmup_ratio=0.0,
                         lora={"enabled": True, "r": 8, "alpha": 16})
    summary = train_dpo(str(tiny_model_dir), pairs_file, tmp_path / "model", cfg, tmp_path / "work")
    out = tmp_path / "model"
    assert summary["steps"] == 2
    # A plain model directory: no adapter files, loadable by any engine, same tensors as the input.
    assert not (out / "adapter_config.json").exists() and (out / "config.json").is_file()
    assert not list(tmp_path.glob("*.adapter"))
    before, after = _weights(tiny_model_dir), _weights(out)
    assert set(after) == set(before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    # LoRA (all-linear) moves the attention and MLP projections and nothing else.
    assert changed and all(("proj" in k) for k in changed), changed
    assert not any("embed" in k or "norm" in k for k in changed)
    saved = load_file(out / "model.safetensors")
    assert not any("lora" in k for k in saved)


def test_two_process_gloo_training_matches_single_process(tmp_path, tiny_model_dir, pairs_file):
    common = dict(learning_rate=1e-3, epochs=1, max_length=64, warmup_ratio=0.0, lr_scheduler="constant")
    single = train_dpo(str(tiny_model_dir), pairs_file, tmp_path / "single", TrainingConfig(batch_size=4, **common),
                       tmp_path / "work1")
    cfg = TrainingConfig(batch_size=2, accelerate_config="cpu_ddp", num_processes=2, **common)
    assert launch_command(cfg, tmp_path / "a.json")[-3:] == ["-m", "lidr.stages.train_launch", str(tmp_path / "a.json")]
    lines: list[str] = []
    multi = train_launched(str(tiny_model_dir), pairs_file, tmp_path / "multi", cfg, tmp_path / "work2",
                           log=lines.append)
    # Same contract: the summary of the same number of optimizer steps on the same pairs,
    # and a plain model directory with the same tensors.
    assert multi["processes"] == 2
    assert multi["pairs"] == single["pairs"] == len(PAIRS)
    assert multi["steps"] == single["steps"] == 2
    assert len(multi["history"]) == 2 and any("train step" in line for line in lines)
    base, w1, w2 = _weights(tiny_model_dir), _weights(tmp_path / "single"), _weights(tmp_path / "multi")
    assert {k: v.shape for k, v in w2.items()} == {k: v.shape for k, v in w1.items()}
    d1, d2 = _delta(base, w1), _delta(base, w2)
    # 2 ranks x 2 pairs per step make the same global batches of 4 as 1 process x 4: the
    # updates agree up to the sft term's per-rank token mean and float reduction order.
    cos = torch.nn.functional.cosine_similarity(d1, d2, dim=0).item()
    print(f"update cosine single vs 2-process: {cos:.4f}; norms {d1.norm():.4f} / {d2.norm():.4f}")
    assert cos > 0.9
    assert json.loads((tmp_path / "work2" / "summary.json").read_text())["steps"] == 2
