"""Kill -9 at random moments of a real run, resume it, and compare with an uninterrupted run.

    taskset -c 1 env OMP_NUM_THREADS=1 python benchmarks/fuzz_resume.py [--trials 24] [--seed 0]
        [--targets evaluation_m0,evaluation_m1]

The run: a tiny Llama that self-translates (tests/helpers.py `train_translating_model`, built
once), the first 3 test prompts in en/es/fr, one iteration, one request per shard, and two
evaluation tasks (mgsm on a small local file, fidelity), so the stages are: evaluation of M0,
generation, translation, pairs, training + model saving, evaluation of M1, report.

One uninterrupted reference run records when each stage's completion marker appears. Each
trial targets a stage (round robin over TARGETS, or the ones given with --targets, so every
stage gets its share; M0's and M1's evaluations are two targets, so evaluation trials
alternate between them), starts `lidr run`, waits
for an event of the run (the stage before done, or the k-th shard of the stage, k random),
then sleeps a random part of the stage's reference duration and sends SIGKILL; "save" trials
kill within 20 ms of the model's temporary directory appearing. The stage actually
interrupted is read from the run directory after the kill (a kill that missed its stage is
redone with a shorter delay). The run is then resumed to the end and compared, file by file, with the reference:
the same set of files (nothing duplicated, no temporary file left), parquet rows (responses,
translations, pairs) and evaluation outputs identical, JSON equal up to timings, model
weights compared tensor by tensor (max abs difference). Every run happens at the same path,
so files that embed it compare too. Results: benchmarks/results/fuzz_resume.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from common import machine, save  # noqa: E402
from helpers import train_translating_model, write_config, write_prompt_set  # noqa: E402

TASKS = ("mgsm", "fidelity")
# (stage, completion marker relative to the run directory), in the order a run reaches them.
MARKERS = [
    ("evaluation_m0", "iter_0/eval/mgsm.json"), ("evaluation_m0", "iter_0/eval/fidelity.json"),
    ("generation", "iter_1/responses/_done.json"), ("translation", "iter_1/translations/_done.json"),
    ("pairs", "iter_1/pairs/_done.json"), ("training", "iter_1/train/_done.json"),
    ("evaluation_m1", "iter_1/eval/mgsm.json"), ("evaluation_m1", "iter_1/eval/fidelity.json"),
    ("report", "report.md"),
]
# In the order a run reaches them; "save" is the end of training, while the model is written.
TARGETS = ["evaluation_m0", "generation", "translation", "pairs", "training", "save", "evaluation_m1", "report"]
TIMING_KEY = re.compile(r"second|time|date|started|finished|elapsed|_s$", re.I)


# ---- the run -------------------------------------------------------------------------


def setup(work: Path) -> tuple[Path, Path]:
    """The translating tiny model, prompts, math items and the config; (config, model)."""
    from lidr.models import bundled_model_dir

    model = work / "model"
    if not (model / "config.json").is_file():
        train_translating_model(model, bundled_model_dir())
    prompts = write_prompt_set(work / "prompts", n=3)  # 3 prompts per language: 12 pairs, 3 steps
    math = work / "math"
    math.mkdir(exist_ok=True)
    items = {"en": "What is {a} plus {b}?", "es": "¿Cuánto es {a} más {b}?", "fr": "Combien font {a} plus {b} ?"}
    for lang, q in items.items():
        rows = [{"id": f"m{a}", "question": q.format(a=a, b=2), "answer": a + 2} for a in (3, 5)]
        (math / f"{lang}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    evaluation = {"tasks": [
        {"task": "mgsm", "data": [str(math / "{lang}.jsonl")], "max_new_tokens": 16, "batch_size": 6},
        {"task": "fidelity", "data": [str(prompts / "{lang}.jsonl")], "limit": 2, "max_new_tokens": 16}]}
    cfg = write_config(work / "run.yaml", model, prompts, iterations=1, evaluation=evaluation,
                       generation={"shard_size": 1}, translation={"max_new_tokens": 48},
                       training={"report_to": "none"})
    return cfg, model


def current_stage(run_dir: Path) -> str:
    for stage, marker in MARKERS:
        if not (run_dir / marker).is_file():
            return stage
    return "after_report"  # report.md written; the summary and exit remain


def start(cfg: Path, run_dir: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as f:
        return subprocess.Popen([sys.executable, "-m", "lidr", "run", str(cfg), "--output", str(run_dir)],
                                stdout=f, stderr=subprocess.STDOUT)


def reference_run(cfg: Path, run_dir: Path, log: Path) -> dict[str, float]:
    """An uninterrupted run; returns the time (s from start) each marker appeared, when the
    run started writing (config.yaml), and when it exited ('exit')."""
    t0, seen = time.perf_counter(), {}
    proc = start(cfg, run_dir, log)
    while proc.poll() is None:
        for m in ["config.yaml", *(m for _, m in MARKERS)]:
            if m not in seen and (run_dir / m).is_file():
                seen[m] = time.perf_counter() - t0
        time.sleep(0.002)
    if proc.returncode:
        raise SystemExit(f"the reference run failed (exit {proc.returncode}); see {log}")
    seen["exit"] = time.perf_counter() - t0
    return seen


def kill_point(target: str, ref: dict[str, Any]):
    """(condition on the run directory, maximum delay after it, the stage a kill must land in).

    Kills are anchored to events of the run itself (a marker, the k-th shard, the model's
    temporary directory), then delayed by a random part of the stage's reference duration,
    so that they land in the target stage whatever the machine's load."""
    t = ref["times"]
    if target in ("generation", "translation"):
        stage_dir = {"generation": "responses", "translation": "translations"}[target]
        n, k = ref["shards"][stage_dir], random.randrange(ref["shards"][stage_dir])
        done = {"generation": "iter_0/eval/fidelity.json", "translation": "iter_1/responses/_done.json"}[target]
        end = {"generation": "iter_1/responses/_done.json", "translation": "iter_1/translations/_done.json"}[target]
        return (lambda d: (d / done).is_file() and len(list((d / "iter_1" / stage_dir).glob("shard_*.parquet"))) >= k,
                (t[end] - t[done]) / n, target)
    if target == "save":
        return lambda d: (d / "iter_1" / "model.tmp").exists(), 0.02, "training"
    if target == "evaluation_m0":  # from the run's start: the model loads, then M0 is evaluated
        return lambda d: (d / "config.yaml").is_file(), t["iter_0/eval/fidelity.json"] - t["config.yaml"], target
    after, end = {"pairs": ("iter_1/translations/_done.json", "iter_1/pairs/_done.json"),
                  "training": ("iter_1/pairs/_done.json", "iter_1/train/_done.json"),
                  "evaluation_m1": ("iter_1/train/_done.json", "iter_1/eval/fidelity.json"),
                  "report": ("iter_1/eval/fidelity.json", "exit")}[target]
    return lambda d: (d / after).is_file(), t[end] - t[after], target


def trial(k: int, target: str, cfg: Path, run_dir: Path, ref: dict[str, Any], logs: Path) -> dict[str, Any]:
    """Kill a run during `target`, record the state left, resume it; the trial record. A kill
    that lands in another stage (the run was faster or slower than the reference) is redone
    with a shorter delay, at most 5 times."""
    log = logs / f"trial_{k:02d}.log"
    for attempt in range(5):
        shutil.rmtree(run_dir, ignore_errors=True)
        ready, max_delay, expect = kill_point(target, ref)
        delay = random.uniform(0, max_delay) * 0.5 ** attempt
        proc = start(cfg, run_dir, log)
        while proc.poll() is None and not ready(run_dir):
            time.sleep(0.001)
        time.sleep(delay)
        if proc.poll() is not None:
            continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        landed = current_stage(run_dir)
        if landed == expect or (expect == "report" and landed == "after_report"):
            break
    else:
        return {"trial": k, "target": target, "killed": False}
    state = {"stage": landed, "temp_files": temp_files(run_dir),
             "shards": {s: len(list((run_dir / "iter_1" / s).glob("shard_*.parquet")))
                        for s in ("responses", "translations")}}
    t0 = time.perf_counter()
    resumed = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "--output", str(run_dir)],
                             capture_output=True, text=True)
    with log.open("a") as f:
        f.write(resumed.stdout + resumed.stderr)
    return {"trial": k, "target": target, "killed": True, "attempt": attempt, "delay_s": round(delay, 4),
            "killed_in": state["stage"], "at_kill": state, "resume_rc": resumed.returncode,
            "resume_s": round(time.perf_counter() - t0, 1),
            "resume_error": resumed.stderr.strip().splitlines()[-1:] if resumed.returncode else []}


# ---- comparison ----------------------------------------------------------------------


def temp_files(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if ".tmp" in p.name or p.name == "work" or p.name.endswith(".lock.tmp"))


def without_timings(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: without_timings(v) for k, v in data.items() if not TIMING_KEY.search(k)}
    if isinstance(data, list):
        return [without_timings(v) for v in data]
    return data


def report_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return re.split(r"^## Time per stage", text, flags=re.M)[0]


def max_abs_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    if ta.keys() != tb.keys():
        return float("inf")
    return max(((ta[k].float() - tb[k].float()).abs().max().item() for k in ta), default=0.0)


def compare(run_dir: Path, reference: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    files = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    ref_files = {str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file()}
    differ, model_diff = [], 0.0
    for rel in sorted(files & ref_files):
        a, b = run_dir / rel, reference / rel
        if rel.endswith(".parquet"):
            same = pq.read_table(a).to_pylist() == pq.read_table(b).to_pylist()
        elif rel.endswith(".safetensors"):
            d = max_abs_diff(a, b)
            model_diff, same = max(model_diff, d), d == 0.0
        elif rel.endswith(".json"):
            same = without_timings(json.loads(a.read_text())) == without_timings(json.loads(b.read_text()))
        elif rel.startswith(".lock-"):
            same = True  # the lock file holds the pid and host of its last holder
        elif rel == "report.md":
            same = report_text(a) == report_text(b)
        else:
            same = a.read_bytes() == b.read_bytes()
        if not same:
            differ.append(rel)
    return {"missing": sorted(ref_files - files), "extra": sorted(files - ref_files), "differ": differ,
            "model_max_abs_diff": model_diff}


# ---- main ----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lidr-fuzz-resume"))
    ap.add_argument("--targets", type=lambda v: v.split(","), default=TARGETS,
                    help=f"comma-separated stages to kill in, round robin (default: all of {','.join(TARGETS)})")
    args = ap.parse_args()
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        ap.error(f"unknown targets {unknown}; choose from {TARGETS}")
    random.seed(args.seed)
    info = machine()
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    info["cpu_flags"] = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4"))]
    info["affinity"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(info))

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    cfg, _ = setup(work)
    run_dir, reference = work / "run", work / "reference"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(reference, ignore_errors=True)
    times = reference_run(cfg, run_dir, logs / "reference.log")
    os.replace(run_dir, reference)
    shards = {s: len(list((reference / "iter_1" / s).glob("shard_*.parquet"))) for s in ("responses", "translations")}
    ref = {"times": times, "shards": shards}
    print("reference marker times (s):", json.dumps({k: round(v, 2) for k, v in times.items()}), "shards:", shards)

    trials = []
    for k in range(args.trials):
        target = args.targets[k % len(args.targets)]
        rec = trial(k, target, cfg, run_dir, ref, logs)
        if rec["killed"] and rec["resume_rc"] == 0:
            rec.update(compare(run_dir, reference))
            rec["left_after_resume"] = temp_files(run_dir)
        rec["ok"] = bool(rec["killed"] and rec["resume_rc"] == 0 and not rec.get("missing") and not rec.get("extra")
                         and not rec.get("differ") and not rec.get("left_after_resume"))
        trials.append(rec)
        print(json.dumps(rec), flush=True)

    killed = [t for t in trials if t["killed"]]
    per_stage: dict[str, int] = {}
    for t in killed:
        per_stage[t["killed_in"]] = per_stage.get(t["killed_in"], 0) + 1
    summary = {
        "trials": len(trials), "killed": len(killed), "ok": sum(t["ok"] for t in trials),
        "killed_in_stage": per_stage,
        "targets": {s: sum(t["target"] == s for t in trials) for s in args.targets},
        "save_kills_with_model_tmp": sum(1 for t in killed if "iter_1/model.tmp" in t["at_kill"]["temp_files"]),
        "model_max_abs_diff": max((t.get("model_max_abs_diff", 0.0) for t in killed), default=0.0),
        "failures": [{k: t.get(k) for k in ("trial", "target", "killed_in", "resume_rc", "resume_error",
                                           "missing", "extra", "differ", "left_after_resume")}
                     for t in trials if not t["ok"]],
    }
    print(json.dumps(summary, indent=2))
    command = ("taskset -c 1 env OMP_NUM_THREADS=1 python benchmarks/fuzz_resume.py "
               f"--trials {args.trials} --seed {args.seed}")
    if args.targets != TARGETS:
        command += f" --targets {','.join(args.targets)}"
    out = save("fuzz_resume", {"command": command, "machine": info,
                               "reference_marker_times_s": times, "summary": summary, "trials": trials})
    print(f"results: {out}")


if __name__ == "__main__":
    main()
