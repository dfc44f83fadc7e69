"""Would sampling several self-translations give French and German pairs? Measured on a run.

A 135M model rarely translates its worked English answers into French or German: it copies
the English, or shrinks it to "The answer is 18". The language_id and answer_consistency gates
drop those, so an iteration keeps few French and German pairs (docs/EVIDENCE.md). This script
takes the English answers of one iteration of a run, translates each into the given languages
`--k` more times at `--temperature` (the run's own model, engine and translation prompt), and
pairs every translation with the native answer exactly as the run does, through the run's
gates. Per language it reports, for the first `--limit` English answers:

    greedy     pairs the run's own (greedy) translation keeps
    sample j   pairs the j-th sampled translation keeps
    any of k   answers for which at least one of the greedy and k sampled translations passes
               (what `translation.retries: k` keeps: lidr.stages.retries, called here)
    chosen ok  among those, the chosen side gives the gold number (Wilson 95 %)

No training: a measure of pair yield and of what the extra pairs would teach.

    python benchmarks/translation_samples.py runs/evidence_arith_chosen_dev2 --iteration 1 \\
        --languages fr,de --limit 100 --k 4 --temperature 0.7
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs_vs_gold import correct, gold_answers, share  # noqa: E402

from lidr import rundir  # noqa: E402
from lidr.config import parse_config  # noqa: E402
from lidr.engines import Sampling, engine_from_config  # noqa: E402
from lidr.engines.pinned import machine_name, pin_engine  # noqa: E402
from lidr.stages import translate  # noqa: E402
from lidr.stages.gates import apply_gates  # noqa: E402
from lidr.stages.generate import sample_of  # noqa: E402
from lidr.stages.pairs import build_pairs  # noqa: E402
from lidr.stages.retries import recover_with_retries, with_retry  # noqa: E402
from lidr.store import read_records as read_stage  # noqa: E402


def kept_pairs(cfg, responses, translations) -> dict[tuple[str, str], dict]:
    """(language, prompt id) -> the kept xx pair, pairs made and gated as the run makes them."""
    rows, _ = build_pairs(responses, translations, cfg.dominant_language, cfg.languages, set(),
                          cfg.pairs.translation_tasks, dominant_pairs=False)
    kept, _ = apply_gates(rows, cfg.pairs.gates, math=True)
    return {(p["language"], str(p["prompt_id"])): p for p in kept if p.get("via_language") is None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--languages", default="fr,de")
    ap.add_argument("--limit", type=int, default=100, help="English answers per language (the run's first)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.7)
    args = ap.parse_args(argv)

    cfg = parse_config(yaml.safe_load(rundir.config_path(args.run).read_text(encoding="utf-8")))
    targets = args.languages.split(",")
    it_dir = args.run / f"iter_{args.iteration}"
    responses = [r for r in read_stage(it_dir / "responses") if sample_of(r) == 0]
    english = [r for r in responses if r["language"] == cfg.dominant_language][: args.limit]
    ids = {str(r["prompt_id"]) for r in english}
    responses = [r for r in responses if str(r["prompt_id"]) in ids]
    greedy = [t for t in read_stage(it_dir / "translations") if str(t["prompt_id"]) in ids and sample_of(t) == 0]
    tc, gates = cfg.translation, cfg.pairs.gates
    requests = [q for q in translate.translation_requests(
        english, cfg.dominant_language, targets, set(), tc.length_factor, tc.max_new_tokens,
        stop_on_loop=gates.enabled and gates.degenerate) if q.meta["target_language"] in targets]

    model = str(args.run / f"iter_{args.iteration - 1}" / "model") if args.iteration > 1 else cfg.model
    if model.startswith("bundled:"):
        from lidr.models import resolve_model

        model = resolve_model(model, None)
    gen, _ = pin_engine(cfg.generation, args.run, None, print)  # the run's own engine where it recorded one
    engine = engine_from_config(gen, model, seed=cfg.seed)
    t0, samples = time.perf_counter(), []
    for j in range(args.k):
        completions = engine.generate(requests, Sampling(args.temperature, tc.top_p, tc.repetition_penalty,
                                                         seed=1000 + j))
        samples.append([translate.translation_record(q, c, tc.accept_unclosed) for q, c in zip(requests, completions)])
    seconds = time.perf_counter() - t0
    engine.close()

    gold = gold_answers(args.run)
    runs = {"greedy": kept_pairs(cfg, responses, greedy)}
    for j, sample in enumerate(samples, 1):
        runs[f"sample {j}"] = kept_pairs(cfg, responses, with_retry(greedy, sample))
    # What `translation.retries: k` keeps: greedy's pairs, then for each xx pair greedy lost the
    # first sample, in order, that passes the gates (the run's own recovery).
    marked = [{**t, "retry": j} for j, sample in enumerate(samples, 1) for t in sample]
    recovered, _ = recover_with_retries(list(runs["greedy"].values()), greedy + marked, cfg.dominant_language,
                                        lambda ts: list(kept_pairs(cfg, responses, ts).values()))
    first_passing = {(p["language"], str(p["prompt_id"])): p for p in recovered}

    print(f"{args.run}, iteration {args.iteration}: {len(english)} English answers, {args.k} samples at "
          f"temperature {args.temperature}, {len(requests) * args.k} translations in {seconds:.0f} s on "
          f"{machine_name()} ({gen.engine} engine, {gen.dtype})\n")
    print("| language | " + " | ".join(runs) + " | any of greedy + k | chosen ok (greedy) | chosen ok (any) |")
    print("|---|" + "---|" * (len(runs) + 3))
    for lang in targets:
        counts = [sum(1 for (lg, _) in kept if lg == lang) for kept in runs.values()]
        ok = defaultdict(int)
        for name, pairs in (("greedy", runs["greedy"]), ("any", first_passing)):
            got = [p for (lg, pid), p in pairs.items() if lg == lang and (lang, pid) in gold]
            ok[name] = (sum(correct(p["chosen"][-1]["content"], gold[(lang, str(p["prompt_id"]))]) for p in got),
                        len(got))
        n_any = sum(1 for (lg, _) in first_passing if lg == lang)
        print(f"| {lang} | " + " | ".join(map(str, counts)) + f" | {n_any} | {share(*ok['greedy'])} | "
              f"{share(*ok['any'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
