"""Data-parallel workers: two `lidr run --worker i --workers 2` processes share one run
directory and produce what one process produces, including after a worker is killed."""

from __future__ import annotations

import subprocess
import sys
import time

from helpers import write_config, write_prompt_set
from lidr.store import read_json

STAGES = ("responses", "translations")


def _worker(cfg, run_dir, i, n=2):
    return subprocess.Popen([sys.executable, "-m", "lidr", "run", str(cfg), "--output", str(run_dir),
                             "--worker", str(i), "--workers", str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_match_one_process_after_a_kill(tmp_path, tiny_model_dir):
    prompts = write_prompt_set(tmp_path / "prompts")
    cfg = write_config(tmp_path / "run.yaml", tiny_model_dir, prompts, iterations=1,
                       generation={"shard_size": 2}, translation={"max_new_tokens": 32})
    reference = tmp_path / "reference"
    one = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "--output", str(reference)],
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]

    run_dir = tmp_path / "parallel"
    # Worker 1 alone: it writes its own (odd) shards, then waits for worker 0's; kill it there.
    early = _worker(cfg, run_dir, 1)
    responses = run_dir / "iter_1" / "responses"
    deadline = time.time() + 300
    while not (responses / "shard_00001.parquet").exists():
        assert early.poll() is None and time.time() < deadline, early.stderr and early.stderr.read()[-3000:]
        time.sleep(0.05)
    early.kill()
    early.wait()
    written = sorted(p.name for p in responses.glob("shard_*.parquet"))
    assert written and all(int(name[6:11]) % 2 == 1 for name in written), written

    w0, w1 = _worker(cfg, run_dir, 0), _worker(cfg, run_dir, 1)
    out0, err0 = w0.communicate(timeout=600)
    out1, err1 = w1.communicate(timeout=600)
    assert w0.returncode == 0, err0[-3000:]
    assert w1.returncode == 0, err1[-3000:]
    # Each worker generated only its own shards; worker 1 redid none of those written before the kill.
    assert "shard 2/" not in err0 and "shard 1/" not in err1 and "shard 2/" in err1
    assert "shard 1/" in err0
    for name in written:
        assert f"generate: shard {int(name[6:11]) + 1}/" not in err1
    # Only worker 0 trains.
    assert "training on" in err0 and "training on" not in err1

    for stage in STAGES:
        a = read_json(run_dir / "iter_1" / stage / "_done.json")
        b = read_json(reference / "iter_1" / stage / "_done.json")
        assert (a["n"], a["hash"]) == (b["n"], b["hash"]), stage
    assert read_json(run_dir / "iter_1" / "pairs" / "_done.json")["n"] == \
        read_json(reference / "iter_1" / "pairs" / "_done.json")["n"]
    assert (run_dir / "iter_1" / "model" / "config.json").is_file()


def test_worker_index_out_of_range(tmp_path, tiny_model_dir):
    prompts = write_prompt_set(tmp_path / "prompts")
    cfg = write_config(tmp_path / "run.yaml", tiny_model_dir, prompts)
    res = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "-o", str(tmp_path / "r"),
                          "--worker", "2", "--workers", "2"], capture_output=True, text=True)
    assert res.returncode == 2 and "--worker 2 is out of range" in res.stderr
    assert not (tmp_path / "r").exists()
