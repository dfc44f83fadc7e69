"""How long should torch's OpenMP threads spin? The hf engine alone, and beside other work.

    cd benchmarks && python bench_hf_wait_policy.py [--requests 32] [--tokens 64] [--steps 6] \
        [--settings unset,OMP_WAIT_POLICY=PASSIVE,GOMP_SPINCOUNT=10000] [--dtype float32]

torch's OpenMP threads spin while they wait unless told otherwise. On a 2-core machine shared
with another process (a test suite, a second run) spinning threads take the cores from each
other. The variable is read once, when torch loads, so each measurement is its own process:
a worker loads the bundled SmolLM2 with the hf engine (`--dtype auto`: bfloat16 on a CPU with
AMX, float32 elsewhere; `--dtype float32`: the longer steps of a CPU without bf16; `--engine ct2`:
CTranslate2 in float32, generation only), generates `--requests` greedy answers of `--tokens` new
tokens at one batch, then times `--steps` forward+backward passes of batch 4 x 256 tokens (a training step's
work). Each setting (`--settings`: libgomp's default, `OMP_WAIT_POLICY=PASSIVE`, a short
`GOMP_SPINCOUNT`) runs `--repeats` times with one worker alone and with two workers at once on
the same cores (`--beside S`: the second worker at setting S, its own timings left out). Prints
the CPU model and flags, each setting's median seconds and the ratios; writes
benchmarks/results/hf_wait_policy.json (hf_wait_policy_beside_S.json with `--beside`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_engines import cpu_flags
from common import machine, median, save

HERE = Path(__file__).resolve()


def worker(n_requests: int, tokens: int, steps: int, dtype: str = "auto", engine_name: str = "hf") -> dict[str, float]:
    import torch

    from lidr.engines import ChatRequest, Sampling
    from lidr.models import bundled_model_dir

    if engine_name == "ct2":  # its own libgomp; it sets OMP_WAIT_POLICY=PASSIVE unless the variable is set
        from lidr.engines.ct2 import CT2Engine

        engine = CT2Engine(str(bundled_model_dir()), compute_type="float32", batch_size=n_requests, log=lambda _: None)
    else:
        from lidr.engines.hf import HFEngine

        engine = HFEngine(str(bundled_model_dir()), dtype=dtype, batch_size=n_requests)
    questions = [json.loads(line)["question"] for line in
                 (HERE.parents[1] / "src/lidr/data/demo/heldout_math/es.jsonl").read_text(encoding="utf-8").splitlines()]
    reqs = [ChatRequest(f"q{i}", [{"role": "user", "content": questions[i % len(questions)]}], max_new_tokens=tokens)
            for i in range(n_requests)]
    t0 = time.perf_counter()
    out = engine.generate(reqs, Sampling())
    generate_s = time.perf_counter() - t0
    if engine_name == "ct2":  # no training on this engine
        return {"generate_s": generate_s, "tokens": sum(c.n_tokens for c in out), "train_s": 0.0,
                "dtype": "ct2 float32"}
    model = engine.model.train()
    ids = torch.randint(0, model.config.vocab_size, (4, 256))
    t0 = time.perf_counter()
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
    train_s = time.perf_counter() - t0
    return {"generate_s": generate_s, "tokens": sum(c.n_tokens for c in out), "train_s": train_s,
            "dtype": str(engine.dtype)}


def worker_env(setting: str) -> dict[str, str]:
    """`setting`: "unset" (libgomp's default) or VAR=VALUE, e.g. OMP_WAIT_POLICY=PASSIVE."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if setting != "unset":
        var, value = setting.split("=", 1)
        env[var] = value
    return env


def run_setting(setting: str, parallel: int, args: argparse.Namespace) -> list[dict[str, float]]:
    """The timings of `parallel` workers at `setting` run at once; with `--beside`, the second
    worker runs at that setting instead and only the first one's timings are returned."""
    cmd = [sys.executable, str(HERE), "--worker", "--requests", str(args.requests), "--tokens", str(args.tokens),
           "--steps", str(args.steps), "--dtype", args.dtype, "--engine", args.engine]
    settings = [setting] + [args.beside or setting] * (parallel - 1)
    procs = [subprocess.Popen(cmd, env=worker_env(s), stdout=subprocess.PIPE, text=True) for s in settings]
    results = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker failed ({setting}, {parallel} at once): rc {p.returncode}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results[:1] if args.beside else results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="the hf engine's dtype; float32 has the longer steps of a CPU without bf16")
    ap.add_argument("--engine", default="hf", choices=["hf", "ct2"],
                    help="ct2: CTranslate2 in float32, generation only (unset = its own OMP_WAIT_POLICY=PASSIVE)")
    ap.add_argument("--settings", default="unset,OMP_WAIT_POLICY=PASSIVE,GOMP_SPINCOUNT=10000",
                    help="comma-separated: unset, or VAR=VALUE for the worker's environment")
    ap.add_argument("--beside", help="the second of two workers at once runs at this setting (e.g. unset: beside a "
                                     "process that keeps the default); writes hf_wait_policy_beside_<it>.json")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.requests, args.tokens, args.steps, args.dtype, args.engine)), flush=True)
        return
    info = machine() | {"cpu_flags": cpu_flags()}
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['cpu_flags'])}", flush=True)
    table = {}
    settings = args.settings.split(",")
    for parallel in (1, 2):
        for setting in settings:
            runs = [r for _ in range(args.repeats) for r in run_setting(setting, parallel, args)]
            key = f"{setting}, {parallel} at once"
            table[key] = {"generate_s": median([r["generate_s"] for r in runs]),
                          "train_s": median([r["train_s"] for r in runs]),
                          "tokens": runs[0]["tokens"], "dtype": runs[0]["dtype"], "runs": runs}
            print(f"{key}: generate {table[key]['generate_s']:.1f} s ({table[key]['tokens']} tokens, "
                  f"{table[key]['dtype']}), {args.steps} train steps {table[key]['train_s']:.1f} s", flush=True)
    for parallel in (1, 2):
        base = table[f"{settings[0]}, {parallel} at once"]
        for setting in settings[1:]:
            other = table[f"{setting}, {parallel} at once"]
            train = f", train {base['train_s'] / other['train_s']:.2f}x" if other["train_s"] else ""
            print(f"{parallel} at once, time {settings[0]} / {setting}: generate "
                  f"{base['generate_s'] / other['generate_s']:.2f}x{train}")
    name = ("hf_wait_policy" + (f"_{args.dtype}" if args.dtype != "auto" else "")
            + ("_ct2" if args.engine == "ct2" else "")
            + (f"_beside_{args.beside.replace('=', '_')}" if args.beside else ""))
    path = save(name, {"machine": info, "args": vars(args), "settings": table})
    print(f"written {path}")


if __name__ == "__main__":
    main()
