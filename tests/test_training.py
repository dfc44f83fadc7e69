"""DPO + NLL training moves the policy toward the chosen answers (a real measurement)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lidr.config import TrainingConfig
from lidr.stages.train import train_dpo
from lidr.store import write_parquet_atomic

PAIRS = [
    ("¿Cuánto es 3 más 4?", "3 más 4 es 7.", "3 plus 4 is 7."),
    ("Nombra un color.", "Un color es el azul.", "A colour is blue."),
    ("¿Qué animal dice miau?", "El gato dice miau.", "The cat says meow."),
    ("¿Cuántos días tiene una semana?", "Una semana tiene siete días.", "A week has seven days."),
]


def completion_logprob(model, tokenizer, prompt: str, answer: str) -> float:
    """log π(answer | prompt) under the chat template, summed over the answer's tokens."""
    msgs = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=False)
    ids = tokenizer(full, return_tensors="pt", add_special_tokens=False).input_ids
    n_head = len(tokenizer(head, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logp = model(ids).logits[0, :-1].float().log_softmax(-1)
    targets = ids[0, 1:]
    token_logps = logp.gather(-1, targets[:, None])[:, 0]
    return token_logps[n_head - 1 :].sum().item()


def mean_margin(model_dir) -> float:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    margins = [completion_logprob(model, tok, p, c) - completion_logprob(model, tok, p, r) for p, c, r in PAIRS]
    return sum(margins) / len(margins)


def test_chosen_minus_rejected_margin_rises(tmp_path, smollm2_dir):
    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in PAIRS]
    pairs_file = tmp_path / "pairs.parquet"
    write_parquet_atomic(pairs_file, rows)
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
