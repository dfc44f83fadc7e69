"""Translation with repetition penalty 1.0 (the default) against 1.1, on a run's own answers.

The same answers (a run's `iter_<t>/responses`, a sample per language) are translated twice by
the run's starting model, once per penalty, with everything else as the translation stage does
it (prompt, prefill, stop tag, token cap). Per direction, on the same requests:

    success       the translation parses (status ok or ok_unclosed)
    consistent    en>xx of a math answer: the translation keeps the English answer's final number
                  (what the answer_consistency gate checks), among answers that have one

with Wilson 95 % intervals and an exact McNemar test between the two penalties (paired by
request). Prints the CPU model and flags; writes benchmarks/results/translation_penalty.json.

    python benchmarks/bench_translation_penalty.py runs/evidence_arith --iteration 1 --per-language 40
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

import yaml
from common import machine, save, timed

from lidr import rundir
from lidr.config import parse_config
from lidr.engines import Sampling, engine_from_config
from lidr.evaluate.stats import mcnemar_exact, wilson_interval
from lidr.models import resolve_model
from lidr.stages import translate
from lidr.store import read_records
from lidr.text.answers import answers_match, extract_answer

PENALTIES = (1.0, 1.1)


def sample_responses(run_dir: Path, t: int, per_language: int, seed: int) -> list[dict]:
    """`per_language` answered prompts, the same ids in every language."""
    rows = [r for r in read_records(rundir.stage_dir(run_dir, t, "responses")) if r["response"]]
    ids_by_lang = defaultdict(set)
    for r in rows:
        ids_by_lang[r["language"]].add(r["prompt_id"])
    common = sorted(set.intersection(*ids_by_lang.values()))
    chosen = set(random.Random(seed).sample(common, min(per_language, len(common))))
    return [r for r in rows if r["prompt_id"] in chosen]


def outcomes(records: list[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """direction -> measure -> request id -> 0/1."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        d = f"{r['source_language']}>{r['target_language']}"
        key = r["prompt_id"]
        out[d]["success"][key] = int(r["translation"] is not None)
        expected = extract_answer(r["source"])
        if expected is not None:
            out[d]["consistent"][key] = int(r["translation"] is not None
                                            and answers_match(extract_answer(r["translation"]), expected))
    return out


def compare(a: dict[str, int], b: dict[str, int]) -> dict:
    keys = sorted(set(a) & set(b))
    ka, kb = sum(a[k] for k in keys), sum(b[k] for k in keys)
    n = len(keys)
    only_a = sum(1 for k in keys if a[k] and not b[k])
    only_b = sum(1 for k in keys if b[k] and not a[k])
    return {"n": n, "rate_1.0": ka / n if n else None, "ci_1.0": wilson_interval(ka, n),
            "rate_1.1": kb / n if n else None, "ci_1.1": wilson_interval(kb, n),
            "only_1.0": only_a, "only_1.1": only_b, "mcnemar_p": mcnemar_exact(only_a, only_b)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--per-language", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, amx_bf16 {info['amx_bf16']}, "
          f"avx512_bf16 {info['avx512_bf16']}", flush=True)
    cfg = parse_config(yaml.safe_load(rundir.config_path(args.run_dir).read_text(encoding="utf-8")))
    responses = sample_responses(args.run_dir, args.iteration, args.per_language, args.seed)
    tc = cfg.translation
    requests = translate.translation_requests(responses, cfg.dominant_language, cfg.languages, set(),
                                              tc.length_factor, tc.max_new_tokens)
    model = resolve_model(cfg.model, None)  # the starting model: what iteration 1 translates with
    engine = engine_from_config(cfg.generation, model)
    records, seconds = {}, {}
    try:
        for rp in PENALTIES:
            sampling = Sampling(tc.temperature, tc.top_p, rp, cfg.seed + args.iteration)
            seconds[rp], comps = timed(lambda: engine.generate(requests, sampling))
            records[rp] = [translate.translation_record(r, c, tc.accept_unclosed) for r, c in zip(requests, comps)]
            print(f"repetition_penalty {rp}: {len(requests)} translations in {seconds[rp]:.0f} s", flush=True)
    finally:
        engine.close()
    per = {rp: outcomes(recs) for rp, recs in records.items()}
    table = {d: {m: compare(per[1.0][d][m], per[1.1][d].get(m, {})) for m in per[1.0][d]} for d in sorted(per[1.0])}
    print("| direction | measure | n | penalty 1.0 | penalty 1.1 | only 1.0 / only 1.1 | McNemar p |")
    print("|---|---|---|---|---|---|---|")
    for d, measures in table.items():
        for m, c in measures.items():
            cells = [f"{c[f'rate_{rp}']:.2f} [{c[f'ci_{rp}'][0]:.2f}, {c[f'ci_{rp}'][1]:.2f}]" for rp in ("1.0", "1.1")]
            print(f"| {d} | {m} | {c['n']} | {cells[0]} | {cells[1]} | {c['only_1.0']} / {c['only_1.1']} | "
                  f"{c['mcnemar_p']:.3g} |")
    save("translation_penalty", {"machine": info, "run_dir": str(args.run_dir), "iteration": args.iteration,
                                 "per_language": args.per_language, "seconds": seconds, "results": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
