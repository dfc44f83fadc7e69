"""The direction of learning, on held-out pairs: lidr's training stage on SmolLM2 makes the
policy prefer correct in-language answers to wrong or English ones on arithmetic problems it
never trained on, and the same run with chosen and rejected swapped moves the other way.

Pairs come from the bundled arithmetic family (`bundled:arith/...`) and its gold answers:
chosen is the correct answer written in the question's language; rejected is either the
correct answer in English (the wrong language) or a wrong answer in the right language.
Training uses `train_1`; the held-out pairs come from `dev`, whose templates are disjoint.
Measured (SmolLM2, 30 pairs, 5 steps at lr 2e-5, 18 held-out pairs): mean margin -6.0 -> +1.4
and mean log p(correct in-language answer) -30.5 -> -11.6; swapped: margin -6.0 -> -5.9.
"""

from __future__ import annotations

import json

import pytest

from helpers import completion_token_logprobs, load_model
from lidr.config import TrainingConfig
from lidr.data.prompts import resolve_path
from lidr.stages.train import train_dpo
from lidr.store import write_parquet_atomic

ANSWER = {"en": "The answer is {n}.", "es": "La respuesta es {n}.", "fr": "La réponse est {n}.",
          "de": "Die Antwort ist {n}."}
LANGS = ("es", "fr", "de")
N_TRAIN, N_HELD_OUT = 10, 6  # per language


def arith_pairs(split: str, per_language: int) -> list[tuple[str, str, str]]:
    """(question, chosen, rejected): rejected alternates English-correct and in-language-wrong."""
    out = []
    for lang in LANGS:
        path = resolve_path(f"bundled:arith/{split}/{lang}.jsonl", None)
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()][:per_language]
        for i, item in enumerate(items):
            n = int(item["answer"])
            chosen = ANSWER[lang].format(n=n)
            rejected = ANSWER["en"].format(n=n) if i % 2 == 0 else ANSWER[lang].format(n=n + 1 + i % 3)
            out.append((item["question"], chosen, rejected))
    return out


def held_out_scores(model_dir, pairs) -> tuple[float, float]:
    """(mean chosen-minus-rejected log-prob margin, mean log-prob of chosen), summed per answer."""
    model, tok = load_model(model_dir)
    margins, chosen = [], []
    for q, c, r in pairs:
        lc = completion_token_logprobs(model, tok, q, c).sum().item()
        lr = completion_token_logprobs(model, tok, q, r).sum().item()
        margins.append(lc - lr)
        chosen.append(lc)
    return sum(margins) / len(margins), sum(chosen) / len(chosen)


@pytest.fixture(scope="module")
def before(smollm2_dir):
    return held_out_scores(smollm2_dir, arith_pairs("dev", N_HELD_OUT))


@pytest.mark.parametrize("swapped", [False, True], ids=["as-built", "swapped"])
def test_held_out_preference_moves_toward_chosen(tmp_path, smollm2_dir, before, swapped):
    train = arith_pairs("train_1", N_TRAIN)
    held_out = arith_pairs("dev", N_HELD_OUT)
    assert not {q for q, _, _ in train} & {q for q, _, _ in held_out}
    rows = [{"prompt": [{"role": "user", "content": q}],
             "chosen": [{"role": "assistant", "content": r if swapped else c}],
             "rejected": [{"role": "assistant", "content": c if swapped else r}]} for q, c, r in train]
    pairs_file = tmp_path / "pairs.parquet"
    write_parquet_atomic(pairs_file, rows)
    cfg = TrainingConfig(learning_rate=2e-5, epochs=1, batch_size=6, max_length=256, warmup_ratio=0.0)
    summary = train_dpo(str(smollm2_dir), pairs_file, tmp_path / "model", cfg, tmp_path / "work")
    assert summary["steps"] == 5

    margin0, chosen0 = before
    margin1, chosen1 = held_out_scores(tmp_path / "model", held_out)
    print(f"held-out (n={len(held_out)}), swapped={swapped}: margin {margin0:.2f} -> {margin1:.2f}, "
          f"log p(correct in-language) {chosen0:.2f} -> {chosen1:.2f}")
    # (a) the chosen-over-rejected log-ratio rises against M0, and (b) so does the likelihood
    # of the correct in-language answers (the NLL term at work).
    direction_holds = margin1 > margin0 + 1.0 and chosen1 > chosen0 + 0.5
    # Trained on swapped pairs, the same check fails: it measures the direction of learning.
    assert direction_holds is not swapped
