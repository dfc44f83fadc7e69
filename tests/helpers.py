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
        "generation": {"max_new_tokens": 24, "batch_size": 4, "shard_size": 4},
        "translation": {"max_new_tokens": 32, "batch_size": 4},
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
