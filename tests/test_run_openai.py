"""`generation.engine: openai` from a run config: lidr starts a real `transformers serve`
for each model it runs (M0, then M1), generates and translates through it, stops it
before training, and evaluates through it too."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys

import pytest

from helpers import write_config, write_prompt_set
from lidr.store import read_json


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "openai")),
                    reason="transformers serve needs pip install 'transformers[serving]==5.23.0'")
def test_run_through_a_served_model(tmp_path, tiny_model_dir):
    hub = tmp_path / "hub"
    hub.mkdir()  # transformers serve answers /v1/models with 500 unless its hub cache exists
    serve = (f"env HF_HUB_OFFLINE=1 HF_HUB_CACHE={shlex.quote(str(hub))} {shlex.quote(sys.executable)} -c "
             "'from transformers.cli.transformers import main; main()' "
             "serve {model} --host 127.0.0.1 --port {port} --device cpu")
    prompts = write_prompt_set(tmp_path / "prompts")  # 3 translation requests: pairs without translation
    openai = {"serve_command": serve, "concurrency": 4, "timeout": 300, "serve_start_timeout": 300,
              "api_key_env": "LIDR_TEST_KEY"}
    cfg = write_config(
        tmp_path / "run.yaml", tiny_model_dir, prompts, iterations=2, languages=["es"],
        # transformers serve takes no repetition_penalty field: plain greedy decoding.
        generation={"engine": "openai", "openai": openai, "max_new_tokens": 12, "repetition_penalty": 1.0},
        translation={"max_new_tokens": 16, "repetition_penalty": 1.0},
        # A large step, so that M1's greedy answers visibly differ from M0's.
        training={"learning_rate": 1e-2, "batch_size": 4, "max_length": 128, "warmup_ratio": 0.0},
        evaluation={"tasks": [{"task": "fidelity", "data": [str(prompts / "{lang}.jsonl")], "limit": 2,
                               "max_new_tokens": 8}]})
    run_dir = tmp_path / "run"
    env = {**__import__("os").environ, "LIDR_TEST_KEY": "secret-key-not-on-disk"}
    res = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "-o", str(run_dir)],
                         capture_output=True, text=True, env=env, timeout=1500)
    assert res.returncode == 0, res.stderr[-3000:]
    for t in (1, 2):
        gen = read_json(run_dir / f"iter_{t}" / "responses" / "_done.json")
        tr = read_json(run_dir / f"iter_{t}" / "translations" / "_done.json")
        assert gen["n"] == 16 and gen["tokens"] > 0 and tr["n"] > 0
        assert (run_dir / f"iter_{t}" / "model" / "config.json").is_file()
        assert read_json(run_dir / f"iter_{t}" / "train" / "_done.json")["steps"] >= 1
    # M0, M1, M2 were evaluated through their own servers.
    for t in (0, 1, 2):
        assert (run_dir / f"iter_{t}" / "eval" / "fidelity.json").is_file()
    # Iteration 2 generated with M1 (a new server on the trained model), not M0.
    assert read_json(run_dir / "iter_1" / "responses" / "_done.json")["hash"] != \
        read_json(run_dir / "iter_2" / "responses" / "_done.json")["hash"]
    # Every server was stopped; the API key is nowhere in the run directory.
    leftover = subprocess.run(["pgrep", "-f", f"HF_HUB_CACHE={hub}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
    for f in run_dir.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".yaml", ".jsonl", ".md", ".parquet"):
            assert b"secret-key-not-on-disk" not in f.read_bytes(), f
