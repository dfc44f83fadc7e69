"""Small aligned prompt sets and configs written by tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

# (en, es, fr); the last ones are translation requests, which pair without self-translation.
PROMPTS = [
    ("Give two tips for sleeping well.", "Da dos consejos para dormir bien.", "Donne deux conseils pour bien dormir."),
    ("Tom has 3 apples and buys 4 more. How many apples does he have?",
     "Tom tiene 3 manzanas y compra 4 más. ¿Cuántas manzanas tiene?",
     "Tom a 3 pommes et en achète 4 de plus. Combien de pommes a-t-il ?"),
    ("Describe a sunny day in one sentence.", "Describe un día soleado en una frase.",
     "Décris une journée ensoleillée en une phrase."),
    ("What is 12 minus 5?", "¿Cuánto es 12 menos 5?", "Combien font 12 moins 5 ?"),
    ("Name three colours.", "Nombra tres colores.", "Cite trois couleurs."),
    ("Translate 'good morning' into German.", "Traduce 'good morning' al alemán.",
     "Traduis « good morning » en allemand."),
    ("Translate the word 'house' into Italian.", "Traduce la palabra 'house' al italiano.",
     "Traduis le mot « house » en italien."),
    ("Translate 'thank you' into Portuguese.", "Traduce 'thank you' al portugués.",
     "Traduis « thank you » en portugais."),
]
LANGS = ("en", "es", "fr")


def write_prompt_set(folder: Path, n: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = PROMPTS[:n] if n else PROMPTS
    for k, lang in enumerate(LANGS):
        with (folder / f"{lang}.jsonl").open("w", encoding="utf-8") as f:
            for i, texts in enumerate(rows):
                f.write(json.dumps({"id": f"p{i}", "instruction": texts[k]}, ensure_ascii=False) + "\n")
    return folder


def write_config(path: Path, model: str | Path, prompts: Path, **over) -> Path:
    cfg = {
        "model": str(model),
        "languages": ["es", "fr"],
        "iterations": 2,
        "prompts": [{"path": str(prompts / "{lang}.jsonl")}],
        # float32: the translating tiny model's taught phrases come out exact in float32; in
        # bfloat16 (the hf engine's, which `engine: auto` is on a CPU with AMX) they drift.
        "generation": {"max_new_tokens": 24, "batch_size": 4, "shard_size": 4, "dtype": "float32"},
        "translation": {"max_new_tokens": 32},
        "training": {"learning_rate": 1e-4, "batch_size": 4, "max_length": 256, "warmup_ratio": 0.0},
        # A random model's text is noise that every gate would drop; gates have their own tests.
        "pairs": {"gates": {"enabled": False}},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# What the translating tiny model answers to a translation request, by target language.
TRANSLATIONS = {"en": "hello friend", "es": "hola amigo", "fr": "bonjour ami", "de": "hallo freund"}


def train_translating_model(out: Path, tokenizer_dir: Path, steps: int = 100, seed: int = 0,
                            phrases: dict[str, str] = TRANSLATIONS) -> Path:
    """A tiny random Llama taught, in ~100 small steps, to answer the paper's translation
    prompt (after the `<translated>` primer) with a fixed phrase of the target language
    (`phrases`) and to close the tag, so that a run on it pairs real self-translations. Its
    answers to other prompts stay random text. The loss is taken on the completion tokens
    only, which keeps the vocabulary projection (most of the cost) small."""
    import random

    from transformers import AutoTokenizer

    from lidr.stages.translate import CLOSE, PREFILL, translation_message

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = _tiny_llama(tok, seed)
    rng = random.Random(seed)

    def example() -> tuple[list[int], int]:
        source = tok.decode([rng.randrange(200, 20000) for _ in range(rng.randint(3, 30))])
        target = rng.choice(sorted(phrases))
        head = tok.apply_chat_template(translation_message(source, target), add_generation_prompt=True,
                                       tokenize=False) + PREFILL
        head_ids = tok(head, add_special_tokens=False).input_ids
        return head_ids + tok(f"{phrases[target]}\n{CLOSE}", add_special_tokens=False).input_ids, len(head_ids)

    _fit(model, tok, lambda: [example() for _ in range(8)], steps)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def train_answering_model(out: Path, tokenizer_dir: Path, answers: list[tuple[list[dict[str, str]], str]],
                          steps: int = 30, seed: int = 0) -> Path:
    """A tiny random Llama taught to answer each of a few chats (messages, answer) with its
    answer and end the turn: a model whose greedy answers to those chats are known. Each
    step trains on all of them; other chats get random text."""
    from transformers import AutoTokenizer

    from lidr.chat import format_chat

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = _tiny_llama(tok, seed)
    examples = []
    for messages, answer in answers:
        head_ids = tok(format_chat(tok, messages), add_special_tokens=False).input_ids
        examples.append((head_ids + tok(answer, add_special_tokens=False).input_ids + [tok.eos_token_id],
                         len(head_ids)))
    _fit(model, tok, lambda: examples, steps)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _tiny_llama(tok, seed: int):
    """A randomly initialised 2-layer Llama for `tok`'s vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
        initializer_range=0.2)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _fit(model, tok, batch, steps: int) -> None:
    """`steps` AdamW steps on the completions of `batch()`, a list of (token ids, length of
    the prompt head): the loss is taken on the tokens after the head only."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        examples = batch()
        n = max(len(ids) for ids, _ in examples)
        ids = torch.tensor([x + [tok.pad_token_id] * (n - len(x)) for x, _ in examples])
        mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in examples])
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        rows = torch.tensor([b for b, (x, h) in enumerate(examples) for _ in range(h - 1, len(x) - 1)])
        cols = torch.tensor([i for x, h in examples for i in range(h - 1, len(x) - 1)])
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[rows, cols]), ids[rows, cols + 1])
        loss.backward()
        opt.step()
        opt.zero_grad()


def completion_token_logprobs(model, tokenizer, prompt: str, answer: str):
    """log π of each completion token (the answer and the turn's end) under the chat template,
    the completion being what TRL trains on: the tokens after the templated prompt."""
    import torch

    msgs = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=False)
    ids = tokenizer(full, return_tensors="pt", add_special_tokens=False).input_ids
    n_head = len(tokenizer(head, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logp = model(ids).logits[0, :-1].float().log_softmax(-1)
    targets = ids[0, 1:]
    token_logps = logp.gather(-1, targets[:, None])[:, 0]
    return token_logps[n_head - 1 :]


def completion_logprob(model, tokenizer, prompt: str, answer: str) -> float:
    """log π(answer | prompt), summed over the answer's tokens."""
    return completion_token_logprobs(model, tokenizer, prompt, answer).sum().item()


def load_model(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval(), tok


def mean_chosen_nll(model_dir, pairs) -> float:
    """The mean negative log-likelihood per chosen token over all pairs, outside the trainer."""
    import torch

    model, tok = load_model(model_dir)
    logps = torch.cat([completion_token_logprobs(model, tok, p, c) for p, c, _ in pairs])
    return -logps.mean().item()
