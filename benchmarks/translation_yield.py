"""Two translation settings on the same requests: how many chosen answers survive the gates?

A non-English pair's chosen answer is the model's English answer translated into xx; when the
translation loops, summarises or changes language, the gates drop the pair (docs/EVIDENCE.md:
29 of 900 survived in the evidence run). This script takes two runs that translated the same
iteration's responses with different settings (say zero-shot and few-shot,
`translation.examples`), keeps the en>xx requests both have translated (a run cut short
counts too), builds the xx pairs from each run's translations and applies the SAME gates to
both (those of the first run's config, or of --gates CONFIG.yaml), then reports per language:

    done       translations that ended before their token cap
    kept       pairs the gates keep (exact McNemar between the runs: the same requests)
    right      kept pairs whose chosen answer gives the gold number
    dropped by the gates that drop the most of the finished ones (the first gate each fails)

Shares carry Wilson 95 % intervals. Usage:

    python benchmarks/translation_yield.py runs/abl_language_id_lines runs/abl_translation_examples
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from lidr import rundir
from lidr.config import GatesConfig, load_config
from lidr.evaluate.stats import discordant, mcnemar_exact
from lidr.stages.gates import first_failed_gate, GateContext
from lidr.stages.pairs import build_pairs
from lidr.store import read_records as read_stage
from pairs_vs_gold import correct, gold_answers, share


def _config(run: Path):
    return load_config(rundir.config_path(run))[0]


def _translations(it_dir: Path) -> dict[tuple, dict]:
    """(prompt id, source, target) -> record, from every shard written so far."""
    records = read_stage(it_dir / "translations")
    return {(r["prompt_id"], r["source_language"], r["target_language"]): r for r in records}


def _gated_xx_pairs(responses, translations, cfg, gates_cfg) -> dict[tuple, tuple[dict, str | None]]:
    """(prompt id, language) -> (xx pair, the first gate it fails or None), for every pair
    pairing makes (a translation cut at its cap makes none)."""
    pairs, _ = build_pairs(responses, translations, cfg.dominant_language, cfg.languages, set(),
                           cfg.pairs.translation_tasks, dominant_pairs=False)
    ctx = GateContext(math=True)
    return {(p["prompt_id"], p["language"]): (p, first_failed_gate(p, gates_cfg, ctx)) for p in pairs}


def _drops(gated: dict, keys: list[tuple], lang: str) -> str:
    reasons = Counter(gated[(k[0], lang)][1] for k in keys if (k[0], lang) in gated)
    reasons.pop(None, None)
    return ", ".join(f"{name} {n}" for name, n in reasons.most_common(3))


def compare(run_a: Path, run_b: Path, iteration: int, gates: GatesConfig) -> list[list[str]]:
    cfg = _config(run_a)
    dirs = [rundir.iteration_dirs(r)[iteration] for r in (run_a, run_b)]
    responses = read_stage(dirs[0] / "responses")
    trans = [_translations(d) for d in dirs]
    en = cfg.dominant_language
    common = {k for k in trans[0].keys() & trans[1].keys() if k[1] == en}
    gated = [_gated_xx_pairs(responses, [t[k] for k in common], cfg, gates) for t in trans]
    kept = [{k: p for k, (p, reason) in g.items() if reason is None} for g in gated]
    gold = gold_answers(run_a)
    rows = []
    for lang in cfg.languages:
        keys = sorted(k for k in common if k[2] == lang)
        n = len(keys)
        cells = [lang, str(n)]
        hits = []
        for t, kp, g in zip(trans, kept, gated):
            done = sum(t[k]["status"] == "ok" for k in keys)
            hit = [int((k[0], lang) in kp) for k in keys]
            right = sum(correct(kp[(k[0], lang)]["chosen"][-1]["content"], gold[(lang, str(k[0]))])
                        for k, h in zip(keys, hit) if h)
            cells += [share(done, n), share(sum(hit), n), share(right, n), _drops(g, keys, lang)]
            hits.append(hit)
        b, c = discordant(*hits)
        cells.append(f"{b} / {c}, p = {mcnemar_exact(b, c):.3g}")
        rows.append(cells)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--gates", type=Path, help="a config whose pairs.gates apply (default: run_a's)")
    args = ap.parse_args(argv)
    a, b = args.run_a.name, args.run_b.name
    header = ["language", "en>xx requests"]
    for run in (a, b):
        header += [f"done ({run})", f"kept ({run})", f"kept, right ({run})", f"most dropped by ({run})"]
    header.append("kept: lost / gained")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    gates = (load_config(args.gates)[0] if args.gates else _config(args.run_a)).pairs.gates
    for row in compare(args.run_a, args.run_b, args.iteration, gates):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
