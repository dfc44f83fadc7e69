"""A quick ct2-against-hf check in one process: 24 mixed requests, greedy, float32.

    python benchmarks/bench_engines_quick.py [--repetition-penalty 1.0]

16 arithmetic questions (held-out demo set, es and en, caps 40 to 85 new tokens) and 8
translation requests (the paper's prompt, prefilled `<translated>`, stop at
`</translated>`, cap 60). Prints the CPU, each engine's time and tokens, the ratio and
how many completions (text, finish reason, token count) are identical. The full
benchmark is bench_engines.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_engines import cpu_flags
from common import machine
from lidr.engines import ChatRequest, Sampling
from lidr.engines.ct2 import CT2Engine
from lidr.engines.hf import HFEngine
from lidr.models import bundled_model_dir
from lidr.stages.translate import CLOSE, PREFILL, translation_message

HELDOUT = Path(__file__).resolve().parents[1] / "src" / "lidr" / "data" / "demo" / "heldout_math"


def requests() -> list[ChatRequest]:
    qs = [json.loads(line)["question"] for lang in ("es", "en")
          for line in (HELDOUT / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()[:8]]
    reqs = [ChatRequest(f"q{i}", [{"role": "user", "content": q}], max_new_tokens=40 + 3 * i) for i, q in enumerate(qs)]
    reqs += [ChatRequest(f"t{i}", translation_message(q, "es"), max_new_tokens=60, prefill=PREFILL, stop=(CLOSE,))
             for i, q in enumerate(qs[8:])]
    return reqs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repetition-penalty", type=float, default=1.0)
    args = ap.parse_args()
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(cpu_flags())}", flush=True)
    model, reqs, sampling = str(bundled_model_dir()), requests(), Sampling(repetition_penalty=args.repetition_penalty)
    out, seconds = {}, {}
    for kind, make in (("ct2", lambda: CT2Engine(model, batch_size=32)),
                       ("hf", lambda: HFEngine(model, dtype="float32", batch_size=32))):
        engine = make()
        t0 = time.perf_counter()
        out[kind] = engine.generate(reqs, sampling)
        seconds[kind] = time.perf_counter() - t0
        engine.close()
        print(f"{kind}: {seconds[kind]:.1f} s, {sum(c.n_tokens for c in out[kind])} tokens", flush=True)
    same = sum(a == b for a, b in zip(out["ct2"], out["hf"]))
    print(f"ct2 / hf speed: {seconds['hf'] / seconds['ct2']:.2f}x; identical completions {same}/{len(reqs)}")


if __name__ == "__main__":
    main()
