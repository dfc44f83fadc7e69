"""Does a model still stop where another stopped? The end-of-turn probability after the same answers.

A model that loops repeats its answer line to the token cap ("El resultado es 10.\\n\\nEl
resultado es 10.\\n\\n..."): it no longer ends its turn after the answer. This reads, for every
item of an mgsm items file whose answer ended on its own (finish_reason "stop"), the probability
each model gives the end-of-turn token right after that same answer, the question alone as the
user turn (the template the evidence runs evaluate with):

    python benchmarks/stop_probability.py runs/R/iter_1/eval/dev_pooled/mgsm_generations.jsonl \\
        runs/R/iter_1/model runs/R/iter_2/model [bundled:smollm2-135m-instruct] [--languages es,fr,de] [--limit 100]

Per language and model: the median probability, and the share of answers after which the model
would more likely stop than go on (p > 0.5), with its Wilson interval; the models are compared on
the same answers (exact McNemar on "p > 0.5").
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lidr.evaluate.stats import discordant, mcnemar_exact, wilson_interval
from lidr.models import resolve_model


def answers(items_file: Path, languages: list[str], limit: int | None) -> dict[str, list[dict]]:
    """lang -> rows whose answer ended on its own (finish_reason "stop")."""
    out: dict[str, list[dict]] = {lang: [] for lang in languages}
    with open(items_file, encoding="utf-8") as f:
        for row in map(json.loads, f):
            if row.get("language") in out and row.get("finish_reason") == "stop":
                out[row["language"]].append(row)
    return {lang: rows[:limit] for lang, rows in out.items()}


@torch.no_grad()
def stop_probabilities(model_dir: str, rows: dict[str, list[dict]]) -> dict[str, list[float]]:
    """P(end of turn | question, answer) under one model, for each row of each language."""
    model_dir = resolve_model(model_dir)  # a directory, a hub id or bundled:smollm2-135m-instruct
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    # The token the chat template closes an assistant turn with (<|im_end|> for SmolLM2).
    end = tok.convert_tokens_to_ids(tok.eos_token)
    out: dict[str, list[float]] = {}
    for lang, lang_rows in rows.items():
        out[lang] = []
        for row in lang_rows:
            prefix = tok.apply_chat_template([{"role": "user", "content": row["question"]}],
                                             tokenize=False, add_generation_prompt=True)
            ids = tok(prefix + row["response"], return_tensors="pt", add_special_tokens=False).input_ids
            out[lang].append(torch.softmax(model(ids).logits[0, -1].float(), -1)[end].item())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("items", type=Path, help="an mgsm_generations.jsonl (the answers read)")
    ap.add_argument("models", nargs="+", help="model directories, compared on the same answers")
    ap.add_argument("--languages", default="es,fr,de")
    ap.add_argument("--limit", type=int, default=None, help="at most this many answers per language")
    args = ap.parse_args()
    rows = answers(args.items, args.languages.split(","), args.limit)
    probs = {m: stop_probabilities(m, rows) for m in args.models}
    print(f"answers: {args.items} (those that ended on their own)\n")
    print("| language | n | model | median P(end of turn) | share P > 0.5 [95 %] | McNemar p against the first |")
    print("|---|---|---|---|---|---|")
    for lang, r in rows.items():
        if not r:
            continue
        first = [int(p > 0.5) for p in probs[args.models[0]][lang]]
        for m in args.models:
            ps = probs[m][lang]
            stops = [int(p > 0.5) for p in ps]
            lo, hi = wilson_interval(sum(stops), len(stops))
            p = "" if m == args.models[0] else f"{mcnemar_exact(*discordant(first, stops)):.3g}"
            print(f"| {lang} | {len(r)} | {m} | {statistics.median(ps):.3f} | {sum(stops) / len(stops):.2f} "
                  f"[{lo:.2f}, {hi:.2f}] | {p} |")


if __name__ == "__main__":
    main()
