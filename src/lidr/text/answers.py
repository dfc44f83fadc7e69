"""Final numeric answer of a free-text answer to a math word problem (MGSM style), in any language.

`extract_answer` looks, in order, for: the last LaTeX ``\\boxed{...}``; the last answer phrase
("The answer is", "答案是", "Ответ:", "####", ...) followed by a number; else the last number in the
text. Digits of any script are first mapped to ASCII, and numbers may use any thousands/decimal
convention ("1,000", "1.000", "1 000", "1'000", "3,5", "1.234,5"); "3/4" and "\\frac{3}{4}" are
fractions (0.75).

An answer phrase may introduce working instead of a number ("The answer is calculated as follows:
16 - 3 - 4 = 9; 9 * 2 = 18"): when the first number after it starts an arithmetic expression, the
answer is the number after the last "=" of that sentence, else the sentence's last number.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator

# Answer phrases, as regexes matched case-insensitively: language -> patterns. The number the
# model means is the first one after the LAST phrase (models restate and check after answering).
# No \b next to Indic/Thai/CJK text: those scripts' combining marks and lack of spaces defeat it.
ANSWER_PHRASES: dict[str, list[str]] = {
    "en": [r"\bthe\s+(?:final\s+)?answer\s+is\b", r"\b(?:final\s+)?answer\s*:"],
    "es": [r"\bla\s+respuesta\s+(?:final\s+)?es\b", r"\brespuesta(?:\s+final)?\s*:"],
    "fr": [r"\bla\s+réponse\s+(?:finale\s+)?est\b", r"\bréponse(?:\s+finale)?\s*:"],
    "de": [r"\bdie\s+(?:endgültige\s+)?antwort\s+(?:ist|lautet)\b", r"\bantwort\s*:"],
    "ru": [r"\bответ\s*:", r"\bответ\s*[—–-]", r"\bответ\s+это\b", r"\bответ\s+будет\b"],
    "zh": [r"答案是", r"答案为", r"答案\s*[:：]"],
    "ja": [r"答えは", r"答え\s*[:：]"],
    "sw": [r"\bjibu\s+ni\b", r"\bjibu\s*:"],
    "th": [r"คำตอบคือ", r"คำตอบ\s*:"],
    "bn": [r"উত্তর\s+হল", r"উত্তর\s+হলো", r"উত্তর\s*:"],
    "te": [r"సమాధానం"],
    "hi": [r"उत्तर\s+है", r"उत्तर\s*:"],
    "ar": [r"الإجابة\s+هي", r"الجواب\s+هو", r"الإجابة\s*:"],
    "gsm8k": [r"####"],
}

_PHRASE_RE = re.compile(
    "|".join(f"(?:{p})" for patterns in ANSWER_PHRASES.values() for p in patterns),
    re.IGNORECASE,
)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")

# Number punctuation that is not ASCII: full-width comma/full stop/hyphen/equals, the minus sign, and the
# Arabic decimal and thousands separators.
_PUNCT = str.maketrans({"，": ",", "．": ".", "－": "-", "−": "-", "＝": "=", "٫": ".", "٬": ","})

# Characters that only ever group thousands: spaces (plain, no-break, narrow no-break, thin,
# figure) and apostrophes (Swiss "1'000", typographic "1’000").
_GROUP_SEPS = " \u00a0\u202f\u2009\u2007'\u2019"

# One number token (after normalize_digits). The minus counts only when not glued to a preceding
# ASCII letter/digit/bracket, so "18-2" and "COVID-19" give no negative numbers. Space-grouped
# numbers need groups of exactly 3 digits, so "3 apples 4 pears" never merges into 34.
_NUMBER_RE = re.compile(
    rf"""
    (?:(?<![0-9A-Za-z)\]])-)?
    (?:
        (?<![0-9/])[0-9]+/[0-9]+(?![0-9/])                                # 3/4 (a fraction)
        |
        [0-9]{{1,3}}(?:[{_GROUP_SEPS}][0-9]{{3}}(?![0-9]))+(?:[.,][0-9]+)?  # 1 000 / 1'000,5
        |
        [0-9]+(?:[.,][0-9]+)*                                             # 1000 / 1,000.5 / 3,5
    )
    """,
    re.VERBOSE,
)

_SPACE_GROUPED_RE = re.compile(rf"[0-9]{{1,3}}(?:[{_GROUP_SEPS}][0-9]{{3}})+(?:[.,][0-9]+)?")
_PLAIN_RE = re.compile(r"[0-9]+(?:[.,][0-9]+)*")
_FRACTION_RE = re.compile(r"([0-9]+)/([0-9]+)")
_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*([0-9]+)\s*\}\s*\{\s*([0-9]+)\s*\}")

# After a number: an operator and another number, i.e. the number starts a calculation.
_OPERATION_RE = re.compile(r"\s*(?:[-+*/×÷·=x]|\\times|\\cdot|\\div)\s*\$?\s*\(?\s*-?[0-9]")
# The end of the stretch of working an answer phrase introduces: a sentence end or a blank line.
# Latin-script full stops need a space after them ("3.5" is a number); CJK and Indic ones do not.
_STRETCH_END_RE = re.compile(r"[.!?](?=\s|$)|[。！？।]|\n\s*\n")


def normalize_digits(text: str) -> str:
    """Map every Unicode decimal digit (full-width, Arabic-Indic, Persian, Devanagari, Bengali,
    Thai, ...) to ASCII, and number punctuation (，．－ −) to its ASCII form.

    On str patterns ``\\d`` matches exactly the Unicode category Nd, i.e. the characters that
    `unicodedata.decimal` knows; each maps to one ASCII digit, so offsets are preserved.
    Superscripts such as "²" are not Nd, which keeps "5²" from becoming 52.
    """
    text = text.translate(_PUNCT)
    return re.sub(r"\d", lambda m: str(unicodedata.decimal(m.group())), text)


def parse_number(token: str) -> float | None:
    """Parse one bare number token in any thousands/decimal convention; None if it is not one."""
    s = normalize_digits(token).strip().rstrip(".,")  # "12." ends a sentence, it is not 12.0
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    fraction = _FRACTION_RE.fullmatch(s)
    if fraction:
        num, den = (int(g) for g in fraction.groups())
        return None if den == 0 else sign * num / den
    if any(c in _GROUP_SEPS for c in s):
        value = _parse_space_grouped(s)
    elif _PLAIN_RE.fullmatch(s):
        value = _parse_dots_and_commas(s)
    else:
        value = None
    return None if value is None else sign * value


def _parse_space_grouped(s: str) -> float | None:
    """'1 000' / "1'000,5": spaces and apostrophes group thousands, so a '.' or ',' is decimal."""
    if not _SPACE_GROUPED_RE.fullmatch(s):
        return None
    digits = "".join(c for c in s if c not in _GROUP_SEPS)
    return float(digits.replace(",", "."))


def _parse_dots_and_commas(s: str) -> float | None:
    seps = [c for c in s if c in ".,"]
    if not seps:
        return float(s)
    decimal = seps[-1]
    if len(set(seps)) == 2:
        # Both marks: the last one is the decimal mark ("1,234.5" and "1.234,5").
        if seps.count(decimal) > 1:
            return None
        whole, frac = s.rsplit(decimal, 1)
        return _join(whole, frac, ({",", "."} - {decimal}).pop())
    if len(seps) > 1:
        # The same mark repeated can only group thousands ("1.000.000", "1,00,000").
        return _join(s, "", decimal)
    whole, frac = s.split(decimal)
    # A single mark followed by exactly 3 digits is read as a thousands separator: MGSM answers
    # are integers, so "1,000" / "1.000" mean one thousand in every convention. Exceptions,
    # where grouping is impossible: a leading "0" ("0.125") or 4+ digits before ("1234.567").
    if len(frac) == 3 and len(whole) <= 3 and whole.lstrip("0"):
        return float(whole + frac)
    return float(f"{whole}.{frac}")


def _join(whole: str, frac: str, group_sep: str) -> float | None:
    """Value of `whole` grouped by `group_sep` plus a decimal part; None for a bad grouping.

    Groups are 3 digits, except inner groups of 2 for Indian grouping ("1,00,000"), which
    Hindi and Bengali answers use.
    """
    groups = whole.split(group_sep)
    first, inner, last = groups[0], groups[1:-1], groups[-1]
    if not (1 <= len(first) <= 3 and len(last) == 3 and all(len(g) in (2, 3) for g in inner)):
        return None
    return float("".join(groups) + ("." + frac if frac else ""))


def _tokens(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[re.Match, float]]:
    """(match, value) of the number tokens in text[start:end], in order, skipping unparsable ones."""
    end = len(text) if end is None else end
    for match in _NUMBER_RE.finditer(text, start, end):
        value = parse_number(match.group())
        if value is not None:
            yield match, value


def _numbers(text: str, start: int = 0, end: int | None = None) -> Iterator[float]:
    """The values of the number tokens in text[start:end], in order."""
    return (value for _, value in _tokens(text, start, end))


def _prepare(text: str) -> str:
    """ASCII digits and markup removed around numbers, so one regex can find them."""
    text = normalize_digits(unicodedata.normalize("NFC", text))  # NFC: "réponse" typed as e + ́
    text = text.replace("{,}", ",").replace("\\,", "\u2009")  # LaTeX "1{,}000", "1\,000"
    text = _LATEX_FRAC_RE.sub(r"\1/\2", text)  # \frac{3}{4} -> 3/4
    # "**Answer**: 18" -> phrase found; a space, not "", so "**1**2" never fuses into 12.
    return text.replace("**", " ")


def _boxed_answer(text: str) -> float | None:
    """First number inside the last \\boxed{...} (braces balanced, e.g. \\boxed{\\text{18}})."""
    matches = list(_BOXED_RE.finditer(text))
    if not matches:
        return None
    start, depth = matches[-1].end(), 1
    for pos in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[pos], 0)
        if depth == 0:
            return next(_numbers(text, start, pos), None)
    return next(_numbers(text, start), None)  # unclosed brace: take what follows


def _phrase_answer(text: str) -> float | None:
    """The number after the last answer phrase. None when nothing follows it ("The answer is
    eighteen"): an earlier phrase's number would then be a stale guess, the last number is better.

    Usually the first number after the phrase. When that number starts a calculation ("the answer
    is 16 - 3 - 4 = 9; 9 * 2 = 18"), the phrase introduces working, and the answer is its result.
    """
    matches = list(_PHRASE_RE.finditer(text))
    if not matches:
        return None
    first = next(_tokens(text, matches[-1].end()), None)
    if first is None:
        return None
    match, value = first
    if not _OPERATION_RE.match(text, match.end()):
        return value
    return _worked_result(text, match.start())


def _worked_result(text: str, start: int) -> float | None:
    """The result of the working that starts at `start`: the number after the last "=" before the
    sentence ends, or the sentence's last number when it has no "=" followed by one."""
    stop = _STRETCH_END_RE.search(text, start)
    end = stop.start() if stop else len(text)
    equals = text.rfind("=", start, end)
    if equals >= 0:
        after = next(_numbers(text, equals + 1, end), None)
        if after is not None:
            return after
    return next(iter(reversed(list(_numbers(text, start, end)))), None)


def extract_answer(text: str) -> float | None:
    """The final numeric answer in a model's free-text answer, or None if it has no number.

    Precedence: \\boxed{} (the most explicit marker), then an answer phrase, then the last number.
    """
    text = _prepare(text)
    for value in (_boxed_answer(text), _phrase_answer(text)):
        if value is not None:
            return value
    return next(iter(reversed(list(_numbers(text)))), None)


def gold_in_question(question: str, gold: str | float) -> bool:
    """Whether the gold answer is one of the numbers the question states ("9 euros for 3
    tickets: the price of one?" -> 3). There an answer that only repeats a number of the
    question scores, and a small model's answers often do ("1.00 euros por 3 entradas")."""
    return any(answers_match(n, gold) for n in _numbers(_prepare(question)))


def answers_match(pred: float | None, gold: str | float) -> bool:
    """Whether the extracted answer equals the gold one ("1,000", "18", 18.0) within 1e-6."""
    if pred is None:
        return False
    if isinstance(gold, str):
        # A bare gold number first; else the gold may be decorated ("$18", "18 dollars").
        parsed = parse_number(gold)
        gold = parsed if parsed is not None else extract_answer(gold)
    if gold is None:
        return False
    return math.isclose(pred, float(gold), rel_tol=0.0, abs_tol=1e-6)
