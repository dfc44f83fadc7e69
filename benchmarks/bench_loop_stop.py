"""Which rule may end a looping translation early without losing a pair? Measured offline on
a run's real translations, with the model's tokenizer; no model runs.

A translation that loops is dropped by the gates either way (`cut_off` when it reaches its
token cap, `degenerate` when it ends in a loop), so its remaining tokens are wasted compute.
For each rule (check every `--every` tokens from `min_tokens` on; stop when the text so far has
`looped_share` above `threshold`) this replays every translation token by token and counts:

    fired       translations the rule would end early
    false cuts  of those, translations that the gates keep in full (finished, parsed, not
                degenerate, within the length-ratio band): a pair the rule would lose
    saved       share of all generated translation tokens the rule would not generate

    python benchmarks/bench_loop_stop.py runs/evidence_arith --iteration 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transformers import AutoTokenizer

from lidr import rundir
from lidr.config import GatesConfig, load_config
from lidr.models import resolve_model
from lidr.stages.gates import is_degenerate
from lidr.store import read_records
from lidr.text.quality import length_ratio, looped_share

RULES = [(min_tokens, threshold) for min_tokens in (32, 48, 64, 96) for threshold in (0.5, 0.6, 0.7, 0.8)]


def checkpoint_shares(tokenizer, ids: list[int], every: int) -> list[tuple[int, float]]:
    """(tokens so far, looped_share of the text so far) at every check a rule could make."""
    start = min(m for m, _ in RULES)
    return [(k, looped_share(tokenizer.decode(ids[:k], skip_special_tokens=True)))
            for k in range(start, len(ids), every)]


def first_fire(shares: list[tuple[int, float]], min_tokens: int, threshold: float) -> int | None:
    return next((k for k, share in shares if k >= min_tokens and share > threshold), None)


def _length_ok(r: dict, gates: GatesConfig) -> bool:
    """The length_ratio gate on this translation (the other gates need the whole pair)."""
    lo, hi = gates.length_ratio
    return lo <= length_ratio(r["translation"], r["source"], r["target_language"], r["source_language"]) <= hi


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--every", type=int, default=16)
    args = ap.parse_args(argv)
    cfg, _ = load_config(rundir.config_path(args.run_dir))
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model, None))
    gates = GatesConfig()
    rows = read_records(rundir.stage_dir(args.run_dir, args.iteration, "translations"))
    prefill_len = len("<translated>\n")
    seqs = []
    for r in rows:
        generated = r["raw"][prefill_len:]
        ids = tokenizer(generated, add_special_tokens=False)["input_ids"]
        kept = r["finish_reason"] != "length" and r["translation"] is not None \
            and not is_degenerate(r["translation"], gates) and _length_ok(r, gates)
        seqs.append((ids, kept, checkpoint_shares(tokenizer, ids, args.every)))
    total = sum(len(ids) for ids, _, _ in seqs)
    n_kept = sum(kept for _, kept, _ in seqs)
    print(f"{len(seqs)} translations, {total} tokens; {n_kept} pass cut_off, degenerate and length_ratio in full")
    print("| min tokens | threshold | fired | false cuts | tokens saved |")
    print("|---|---|---|---|---|")
    for min_tokens, threshold in RULES:
        fired = false_cuts = saved = 0
        for ids, kept, shares in seqs:
            k = first_fire(shares, min_tokens, threshold)
            if k is not None:
                fired += 1
                false_cuts += kept
                saved += len(ids) - k
        print(f"| {min_tokens} | {threshold} | {fired} | {false_cuts} | {saved / total:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
