"""Two iterations end to end on a tiny Llama that self-translates, with a kill -9 in the
middle of a stage."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from helpers import TRANSLATIONS, mean_chosen_nll, write_config, write_prompt_set
from lidr.store import read_json


def lidr(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lidr", *args], capture_output=True, text=True, **kw)


def pairs_of(run_dir, t):
    return pq.read_table(run_dir / f"iter_{t}" / "pairs" / "pairs.parquet").to_pylist()


def texts(pairs):
    return [(p["prompt"][0]["content"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs]


def test_two_iterations_resume_after_kill(tmp_path, translating_model_dir):
    prompts = write_prompt_set(tmp_path / "prompts")
    # One request per shard so that the kill lands between shards of a running stage; one
    # batch holds every pair, so that step 1's loss is over all of them (checked below).
    cfg = write_config(tmp_path / "run.yaml", translating_model_dir, prompts,
                       generation={"shard_size": 1}, translation={"max_new_tokens": 48},
                       training={"learning_rate": 1e-3, "batch_size": 64, "epochs": 2, "max_length": 256,
                                 "warmup_ratio": 0.0, "logging_steps": 1})

    reference = tmp_path / "reference"
    done = lidr("run", str(cfg), "--output", str(reference))
    assert done.returncode == 0, done.stderr[-3000:]

    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "lidr", "run", str(cfg), "--output", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage = run_dir / "iter_1" / "translations"
    deadline = time.time() + 300
    while not (stage / "shard_00002.parquet").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before the translation stage"
        time.sleep(0.005)
    proc.kill()  # SIGKILL: no cleanup runs
    proc.wait()
    assert not (stage / "_done.json").exists(), "the kill must land in the middle of the stage"
    written = sorted(stage.glob("shard_*.parquet"))
    assert written and (run_dir / "iter_1" / "responses" / "_done.json").is_file()

    resumed = lidr("run", str(cfg), "--output", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The generation stage was finished: it is not run again.
    assert "iter 1 generate: shard" not in resumed.stderr
    # Shards written before the kill are kept as they were, and the stage resumed after them.
    assert all(f.is_file() for f in written)
    assert f"iter 1 translate: shard {len(written) + 1}/" in resumed.stderr

    for t in (1, 2):
        assert pairs_of(run_dir, t) == pairs_of(reference, t)
        for stage_name in ("responses", "translations"):
            a = read_json(run_dir / f"iter_{t}" / stage_name / "_done.json")
            b = read_json(reference / f"iter_{t}" / stage_name / "_done.json")
            assert a["hash"] == b["hash"] and a["n"] == b["n"]
        train = read_json(run_dir / f"iter_{t}" / "train" / "_done.json")
        assert train["steps"] >= 1 and train["pairs"] == len(pairs_of(run_dir, t))
        assert (run_dir / f"iter_{t}" / "model" / "config.json").is_file()

    # Iteration 1 trains on self-translated pairs: the English answer translated into xx is
    # chosen, and the xx answer translated into English is rejected.
    p1 = pairs_of(run_dir, 1)
    for xx in ("es", "fr"):
        mine = [p for p in p1 if p["language"] == xx and p["chosen_source"] == f"en>{xx} translation"]
        assert all(p["chosen_origin"] for p in mine)
        assert any(p["chosen"][0]["content"] == TRANSLATIONS[xx] for p in mine)  # the model's phrase for xx
        back = [p for p in p1 if p["via_language"] == xx and p["rejected_source"] == f"{xx}>en translation"]
        assert back and all(p["rejected_origin"] for p in back)

    # Iteration 2 starts from M1 and M1 is its reference: at step 1 the reward margin is 0
    # (reference = policy), the DPO term is log 2, and the NLL term (α = 1) is the mean NLL
    # of the chosen answers under M1, computed here outside the trainer; under M0 it differs.
    first = read_json(run_dir / "iter_2" / "train" / "_done.json")["history"][0]
    assert first["step"] == 1 and first["margin"] == pytest.approx(0.0, abs=1e-5)
    p2 = texts(pairs_of(run_dir, 2))
    nll_m1 = mean_chosen_nll(run_dir / "iter_1" / "model", p2)
    nll_m0 = mean_chosen_nll(translating_model_dir, p2)
    assert first["loss"] - math.log(2) == pytest.approx(nll_m1, rel=1e-3)
    assert abs(nll_m1 - nll_m0) > 0.05 * nll_m1, (nll_m1, nll_m0)

    # The pairs are TRL's conversational preference format, loadable with datasets.
    from datasets import Dataset

    ds = Dataset.from_parquet(str(run_dir / "iter_1" / "pairs" / "pairs.parquet"))
    row = ds[0]
    assert {"prompt_id", "language", "prompt", "chosen", "rejected"} <= set(ds.column_names)
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert set(ds["language"]) == {"en", "es", "fr"}

    # Iteration 2 starts from M1: its responses differ from iteration 1's.
    r1 = read_json(run_dir / "iter_1" / "responses" / "_done.json")["hash"]
    r2 = read_json(run_dir / "iter_2" / "responses" / "_done.json")["hash"]
    assert r1 != r2

    # A finished run re-run is a no-op that prints the same summary.
    again = lidr("run", str(cfg), "--output", str(run_dir))
    assert again.returncode == 0 and "shard" not in again.stderr and "iteration 2" in again.stdout
