"""One process per run directory and worker index: a second `lidr run` is refused, a killed one frees it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from helpers import write_config, write_prompt_set


def lidr(*args):
    return subprocess.run([sys.executable, "-m", "lidr", "run", *args], capture_output=True, text=True, timeout=600)


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "lidr", "run", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_holder(proc, lock_file):
    """Until the process has taken the lock (its pid is in the lock file) and written config.yaml."""
    deadline = time.time() + 300
    while not (lock_file.is_file() and lock_file.read_text().startswith(f"{proc.pid} ")
               and (lock_file.parent / "config.yaml").is_file()):
        assert proc.poll() is None and time.time() < deadline, "the first run ended before taking the lock"
        time.sleep(0.05)


def refused(result, pid, worker=""):
    err = result.stderr.strip()
    assert result.returncode == 2, err[-2000:]
    assert len(err.splitlines()) == 1, err
    assert f"is in use by another {worker}lidr run (pid {pid} on host {socket.gethostname()})" in err, err


def test_second_run_is_refused_and_a_killed_run_frees_the_directory(tmp_path, tiny_model_dir):
    prompts = write_prompt_set(tmp_path / "prompts")
    # Long enough (the hf engine, one request per shard, long answers) that the first run is
    # still generating when the second one starts, on a fast machine too.
    cfg = write_config(tmp_path / "run.yaml", tiny_model_dir, prompts, iterations=1,
                       generation={"engine": "hf", "shard_size": 1, "max_new_tokens": 200})
    run_dir = tmp_path / "run"
    first = start(str(cfg), "--output", str(run_dir))
    try:
        wait_for_holder(first, run_dir / ".lock-0")
        saved = (run_dir / "config.yaml").stat().st_mtime_ns
        second = lidr(str(cfg), "--output", str(run_dir))
        refused(second, first.pid)
        # The refused run wrote nothing: config.yaml is written once per run, right after the lock.
        assert (run_dir / "config.yaml").stat().st_mtime_ns == saved
        assert first.poll() is None, "the refused run must not disturb the running one"
    finally:
        first.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
        first.wait()
    third = lidr(str(cfg), "--output", str(run_dir))
    assert third.returncode == 0, third.stderr[-3000:]
    assert (run_dir / "iter_1" / "model" / "config.json").is_file()


def test_lock_is_per_worker_index(tmp_path, tiny_model_dir):
    prompts = write_prompt_set(tmp_path / "prompts", n=2)
    cfg = write_config(tmp_path / "run.yaml", tiny_model_dir, prompts, iterations=1, generation={"shard_size": 1})
    run_dir = tmp_path / "run"
    # Worker 1 alone writes its shards, then waits for worker 0's: it holds its lock meanwhile.
    worker1 = start(str(cfg), "--output", str(run_dir), "--worker", "1", "--workers", "2")
    try:
        wait_for_holder(worker1, run_dir / ".lock-1")
        again = lidr(str(cfg), "--output", str(run_dir), "--worker", "1", "--workers", "2")
        refused(again, worker1.pid, worker="worker 1 of ")
        # Worker 0 is another index: it runs, and together they finish the run.
        worker0 = lidr(str(cfg), "--output", str(run_dir), "--worker", "0", "--workers", "2")
        assert worker0.returncode == 0, worker0.stderr[-3000:]
        assert worker1.wait(timeout=300) == 0
    finally:
        if worker1.poll() is None:
            worker1.kill()
            worker1.wait()
    assert (run_dir / "iter_1" / "train" / "_done.json").is_file()
