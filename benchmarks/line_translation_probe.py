"""Would translating a worked answer line by line help a small model? A probe on a run's answers.

    python benchmarks/line_translation_probe.py RUN [--iteration 1] [--language fr] [--answers 40]

Takes English answers of a finished translation stage (the 200th onward, so not only the
longest), splits each into lines, and has the run's starting model translate every line that
has a letter (lines of digits and signs need none) with the paper's prompt (lidr's
translation_message, prefilled `<translated>`, stop at `</translated>`, 96 new tokens, greedy,
ct2 float32). Reported with Wilson 95 % intervals: lines whose translation parses, and whose
translation is identified as the target language; and, for the same answers, the whole-text
translations the run made: parsed, and identified as the target language. Prints examples, so
the reader can judge the content, which no count here measures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import machine
from bench_engines import cpu_flags
from lidr import rundir
from lidr.config import load_config
from lidr.engines.base import ChatRequest, Sampling
from lidr.engines.ct2 import CT2Engine
from lidr.models import resolve_model
from lidr.stages.translate import CLOSE, PREFILL, translation_message, translation_record
from lidr.store import read_records
from lidr.text.langid import detect_language
from lidr.text.quality import letters
from pairs_vs_gold import share


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--language", default="fr")
    ap.add_argument("--answers", type=int, default=40)
    args = ap.parse_args()
    info = machine() | {"cpu_flags": cpu_flags()}
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['cpu_flags'])}")
    cfg = load_config(rundir.config_path(args.run))[0]
    en = [r for r in read_records(rundir.stage_dir(args.run, args.iteration, "responses"))
          if r["language"] == cfg.dominant_language and r["response"]][200:200 + args.answers]
    whole = {t["prompt_id"]: t for t in read_records(rundir.stage_dir(args.run, args.iteration, "translations"))
             if t["source_language"] == cfg.dominant_language and t["target_language"] == args.language}
    model = cfg.model if args.iteration == 1 else str(rundir.model_dir(args.run, args.iteration - 1))
    engine = CT2Engine(resolve_model(model), compute_type="float32", batch_size=64, log=lambda s: None)
    reqs = [ChatRequest(id=f"{r['prompt_id']}#{k}", messages=translation_message(line, args.language),
                        max_new_tokens=96, prefill=PREFILL, stop=(CLOSE,), stop_on_loop=True,
                        meta={"prompt_id": r["prompt_id"], "source_language": "en",
                              "target_language": args.language, "source": line})
            for r in en for k, line in enumerate(r["response"].split("\n")) if letters(line)]
    records = [translation_record(q, c, True) for q, c in zip(reqs, engine.generate(reqs, Sampling()))]
    engine.close()
    parsed = [r for r in records if r["translation"]]
    in_lang = [r for r in parsed if detect_language(r["translation"])[0] == args.language]
    w = [whole[r["prompt_id"]] for r in en if r["prompt_id"] in whole]
    w_parsed = [t for t in w if t["translation"]]
    w_lang = [t for t in w_parsed if detect_language(t["translation"])[0] == args.language]
    print(f"{len(en)} English answers, {len(reqs)} lines with letters, en>{args.language}")
    print(f"line by line: parsed {len(parsed)}/{len(reqs)} = {share(len(parsed), len(reqs))}, "
          f"in {args.language} {len(in_lang)}/{len(reqs)} = {share(len(in_lang), len(reqs))}")
    print(f"whole text (the run's): parsed {len(w_parsed)}/{len(w)} = {share(len(w_parsed), len(w))}, "
          f"in {args.language} {len(w_lang)}/{len(w)} = {share(len(w_lang), len(w))}")
    for r in records[:20]:
        print(repr(r["source"][:90]), "->", repr((r["translation"] or "(failed: " + r["status"] + ")")[:120]))


if __name__ == "__main__":
    main()
