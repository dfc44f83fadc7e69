"""Translation token cap: how long human translations are, in the model's tokens, against their source.

The translation stage caps each request at `translate.translation_cap(...)` new tokens; a
translation that needs more is cut, fails as `truncated`, and its pair is dropped. This script
measures, with SmolLM2's tokenizer, the token ratio target/source on human-aligned text and the
share of human-length translations each cap would cut, per language and direction:

- Alpagasus instructions (`shared/data/alpagasus`, both blocks, 2,000 aligned prompts), en vs
  each of its 10 other languages: short text;
- X-AlpacaEval GPT-4-turbo references (`shared/data/x_alpacaeval/reference`), en vs de/es/fr/ru,
  paired by instruction id: answer-length text (written per language, not translated, so the
  ratio is noisier than a translation's).

The target is counted as the model must write it: the text, a newline and `</translated>`.

    python benchmarks/bench_translation_cap.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from transformers import AutoTokenizer

from lidr.config import TranslationConfig
from lidr.languages import get_language
from lidr.models import resolve_model
from lidr.stages.translate import CLOSE, translation_cap

ROOT = Path(__file__).resolve().parents[1]
OLD_FACTOR, OLD_CAP = 2.0, 10**9  # the former cap: min(max_new_tokens, 2.0 x source + 16)
FACTOR = TranslationConfig().length_factor  # the default


def old_cap(source_tokens: int) -> int:
    return min(OLD_CAP, math.ceil(OLD_FACTOR * source_tokens) + 16)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def alpagasus_pairs(data: Path) -> dict[str, list[tuple[str, str]]]:
    """lang -> [(en text, xx text)] aligned by id over both blocks."""
    out: dict[str, list[tuple[str, str]]] = {}
    for block in ("id_0_1000", "id_1000_2000"):
        folder = data / "alpagasus" / block
        en = {r["id"]: r["instruction"] for r in read_jsonl(folder / "en.jsonl")}
        for path in sorted(folder.glob("*.jsonl")):
            if path.stem == "en":
                continue
            rows = read_jsonl(path)
            out.setdefault(path.stem, []).extend((en[r["id"]], r["instruction"]) for r in rows if r["id"] in en)
    return out


def reference_pairs(data: Path) -> dict[str, list[tuple[str, str]]]:
    """lang -> [(en reference, xx reference)]; the English file has no ids: match by instruction."""
    ref = data / "x_alpacaeval" / "reference" / "gpt-4-turbo-2024-04-09"
    en_ids = {r["instruction"].strip(): r["id"] for r in json.loads((data / "x_alpacaeval" / "en.json").read_text())}
    en = {en_ids[r["instruction"].strip()]: r["output"] for r in json.loads((ref / "en.json").read_text())
          if r["instruction"].strip() in en_ids}
    out = {}
    for path in sorted(ref.glob("*.json")):
        if path.stem != "en":
            out[path.stem] = [(en[r["id"]], r["output"]) for r in json.loads(path.read_text()) if r["id"] in en]
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def measure(tok, pairs: list[tuple[str, str]], src_lang: str, tgt_lang: str, max_new: int) -> dict:
    """Ratios target/source and the share cut by the old and the current cap, one direction."""
    def n(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    src_i, tgt_i = (0, 1) if src_lang == "en" else (1, 0)
    rows = [(n(p[src_i]), n(p[tgt_i] + "\n" + CLOSE)) for p in pairs]
    ratios = [t / s for s, t in rows if s]
    cut_old = sum(t > old_cap(s) for s, t in rows)
    cut_new = sum(t > translation_cap(s, FACTOR, max_new, src_lang, tgt_lang) for s, t in rows)
    return {"n": len(rows), "median_ratio": round(statistics.median(ratios), 2),
            "p98_ratio": round(pct(ratios, 0.98), 2), "max_ratio": round(max(ratios), 2),
            "cut_old_pct": round(100 * cut_old / len(rows), 2), "cut_new_pct": round(100 * cut_new / len(rows), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--max-new-tokens", type=int, default=10**6, help="flat cap (default: none)")
    args = parser.parse_args()
    tok = AutoTokenizer.from_pretrained(resolve_model("bundled:smollm2-135m-instruct", None))
    results = {}
    for name, pairs in (("alpagasus", alpagasus_pairs(args.data)), ("x_alpacaeval_ref", reference_pairs(args.data))):
        for lang, rows in sorted(pairs.items()):
            get_language(lang)
            for src, tgt in (("en", lang), (lang, "en")):
                r = measure(tok, rows, src, tgt, args.max_new_tokens)
                results[f"{name} {src}>{tgt}"] = r
                print(f"{name:17s} {src}>{tgt}  n {r['n']:5d}  ratio median {r['median_ratio']:5.2f} "
                      f"p98 {r['p98_ratio']:5.2f} max {r['max_ratio']:6.2f}  cut: old {r['cut_old_pct']:6.2f} % "
                      f"new {r['cut_new_pct']:5.2f} %", flush=True)
    out = ROOT / "benchmarks" / "results" / "translation_cap.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
