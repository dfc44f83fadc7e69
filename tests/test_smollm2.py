"""`lidr run` on the real SmolLM2-135M-Instruct: a few prompts, short generations."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import yaml

from lidr.store import read_json


def test_lidr_run_on_smollm2(tmp_path, shared_data, smollm2_dir):
    cfg = {
        "name": "smoke",
        "languages": ["es", "de"],
        "iterations": 1,
        "prompts": [{"path": str(shared_data / "alpagasus/id_0_1000/{lang}.jsonl"), "limit": 3}],
        "generation": {"max_new_tokens": 48, "batch_size": 8},
        "translation": {"max_new_tokens": 96},
        "training": {"learning_rate": 5e-6, "batch_size": 2, "max_length": 256},
        "pairs": {"gates": {"enabled": False}},  # short generations are cut off: the gates would drop them
    }
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "lidr", "run", str(path), "--output", str(run_dir)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    responses = pq.read_table(run_dir / "iter_1" / "responses").to_pylist()
    assert len(responses) == 9
    assert sum(1 for r in responses if len(r["response"]) > 20) >= 8  # a real model writes real answers
    tr = read_json(run_dir / "iter_1" / "translations" / "_done.json")
    assert set(tr["directions"]) == {"en>es", "en>de", "es>en", "de>en"}
    assert sum(d["parsed"] for d in tr["directions"].values()) >= 1
    pairs = read_json(run_dir / "iter_1" / "pairs" / "_done.json")
    train = read_json(run_dir / "iter_1" / "train" / "_done.json")
    assert pairs["n"] == train["pairs"] >= 1
    assert (run_dir / "iter_1" / "model" / "model.safetensors").is_file()
    assert "iteration 1" in result.stdout and "training:" in result.stdout
