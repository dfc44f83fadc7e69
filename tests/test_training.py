"""DPO + NLL training moves the policy toward the chosen answers (a real measurement)."""

from __future__ import annotations

import math

import pytest

from helpers import completion_logprob, completion_token_logprobs, load_model, mean_chosen_nll
from lidr.config import TrainingConfig
from lidr.stages.train import end_of_turn_ids, train_dpo
from lidr.store import write_parquet_atomic

PAIRS = [
    ("¿Cuánto es 3 más 4?", "3 más 4 es 7.", "3 plus 4 is 7."),
    ("Nombra un color.", "Un color es el azul.", "A colour is blue."),
    ("¿Qué animal dice miau?", "El gato dice miau.", "The cat says meow."),
    ("¿Cuántos días tiene una semana?", "Una semana tiene siete días.", "A week has seven days."),
]


def mean_margin(model_dir) -> float:
    model, tok = load_model(model_dir)
    margins = [completion_logprob(model, tok, p, c) - completion_logprob(model, tok, p, r) for p, c, r in PAIRS]
    return sum(margins) / len(margins)


def write_pairs(path, pairs):
    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in pairs]
    write_parquet_atomic(path, rows)
    return path


def test_chosen_minus_rejected_margin_rises(tmp_path, smollm2_dir):
    pairs_file = write_pairs(tmp_path / "pairs.parquet", PAIRS)
    cfg = TrainingConfig(learning_rate=5e-6, epochs=2, batch_size=2, max_length=128, warmup_ratio=0.0)
    summary = train_dpo(str(smollm2_dir), pairs_file, tmp_path / "model", cfg, tmp_path / "work")
    assert summary["steps"] == 4 and summary["pairs"] == 4

    before = mean_margin(smollm2_dir)
    after = mean_margin(tmp_path / "model")
    print(f"mean chosen-minus-rejected log-prob margin: before {before:.3f}, after {after:.3f}")
    # The policy's log-ratio margin, measured outside the trainer, grew.
    assert after > before + 0.5, (before, after)
    # The trainer's own reward margin (β · Δ log-ratio vs the reference) ends positive.
    assert summary["history"][-1]["margin"] > 0


def test_nll_term_weighs_in_as_alpha_times_mean_chosen_nll(tmp_path, tiny_model_dir):
    """L = -log σ(β·Δ) + α · NLL(chosen). At step 1 the policy is the reference, so the DPO
    term is log 2 exactly, and the α term is the mean per-token NLL of the chosen answers,
    which is computed here with plain transformers, outside the trainer."""
    pairs_file = write_pairs(tmp_path / "pairs.parquet", PAIRS)
    step1 = {}
    for alpha in (0.0, 1.0, 2.5):
        # One batch holds every pair, so step 1's loss is over all of them.
        cfg = TrainingConfig(alpha=alpha, learning_rate=1e-3, epochs=1, batch_size=len(PAIRS), max_length=128,
                             warmup_ratio=0.0, logging_steps=1)
        summary = train_dpo(str(tiny_model_dir), pairs_file, tmp_path / f"m{alpha}", cfg, tmp_path / "work")
        first = summary["history"][0]
        assert first["step"] == 1 and first["margin"] == pytest.approx(0.0, abs=1e-5)
        step1[alpha] = first["loss"]
    nll = mean_chosen_nll(tiny_model_dir, PAIRS)
    print(f"step-1 loss by alpha {step1}; mean chosen NLL outside the trainer {nll:.4f}")
    assert nll > 1.0  # a random model: the α term is large, so a dropped term cannot pass
    assert step1[0.0] == pytest.approx(math.log(2), abs=1e-4)
    assert step1[1.0] - step1[0.0] == pytest.approx(nll, rel=1e-3)
    assert step1[2.5] - step1[0.0] == pytest.approx(2.5 * nll, rel=1e-3)



def mean_completion_logprob(model_dir, pairs, side: int, drop_last: int = 0) -> float:
    """Mean over pairs of log π(side's completion), summed over its tokens (the answer, then
    the template's <|im_end|> and "\n"), leaving out the last `drop_last` tokens; outside the trainer."""
    model, tok = load_model(model_dir)
    logps = [completion_token_logprobs(model, tok, pair[0], pair[side]) for pair in pairs]
    return sum(lp[: len(lp) - drop_last].sum().item() for lp in logps) / len(pairs)


def test_the_rejected_sides_end_of_turn_leaves_dpo_when_asked(tmp_path, tiny_model_dir, smollm2_dir):
    """DPO's log-ratio covers the whole rejected completion, the chat template's end of turn
    included; with `rejected_end_of_turn: false` the rejected side ends on its last content token
    and the chosen side is unchanged. At step 1 the policy is M0, so the trainer's logged sequence
    log-probs are M0's, computed here with plain transformers."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tok.convert_ids_to_tokens(end_of_turn_ids(tok)) == ["<|im_end|>", "Ċ"]

    pairs_file = write_pairs(tmp_path / "pairs.parquet", PAIRS)
    logged = {}
    for keep in (True, False):
        cfg = TrainingConfig(learning_rate=1e-3, epochs=1, batch_size=len(PAIRS), max_length=128,
                             warmup_ratio=0.0, rejected_end_of_turn=keep)
        summary = train_dpo(str(tiny_model_dir), pairs_file, tmp_path / f"m{keep}", cfg, tmp_path / "work")
        logged[keep] = summary["history"][0]
    chosen = mean_completion_logprob(tiny_model_dir, PAIRS, side=1)
    rejected_whole = mean_completion_logprob(tiny_model_dir, PAIRS, side=2)
    rejected_open = mean_completion_logprob(tiny_model_dir, PAIRS, side=2, drop_last=2)
    print(f"step-1 logps: {logged}; outside: chosen {chosen:.3f}, rejected {rejected_whole:.3f}, "
          f"without its end of turn {rejected_open:.3f}")
    assert rejected_whole < rejected_open - 5.0  # a random model: the end of turn weighs, so the two differ
    for keep in (True, False):
        assert logged[keep]["logps_chosen"] == pytest.approx(chosen, abs=1e-2)
    assert logged[True]["logps_rejected"] == pytest.approx(rejected_whole, abs=1e-2)
    assert logged[False]["logps_rejected"] == pytest.approx(rejected_open, abs=1e-2)
