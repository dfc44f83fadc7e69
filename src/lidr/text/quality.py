"""Text measures that need no model: translation requests, repetition loops, lengths across scripts.

Pure functions of a string, used by the quality gates (`lidr.stages.gates`, which documents
how each threshold was measured) and by the pairing stage.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable


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

def letters(text: str) -> int:
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
        ln for ln in lines if not ln.startswith(_CODE_FENCE) and letters(ln) >= _MIN_LINE_LETTERS
    )
    return max(counts.values(), default=1) - 1



def length_ratio(translation: str, origin: str, target: str | None, source: str | None) -> float:
    """len(translation) / len(origin), each in English-equivalent characters."""
    t = len(translation.strip()) / CHARS_PER_ENGLISH_CHAR.get(target or "", 1.0)
    o = len(origin.strip()) / CHARS_PER_ENGLISH_CHAR.get(source or "", 1.0)
    return t / o if o else float("inf")


# A text this looped (share of its tokens inside n-grams said 3+ times) is a repetition loop
# whatever comes after it: the threshold at which an engine may stop generating it
# (`ChatRequest.stop_on_loop`), chosen on real translations (benchmarks/bench_loop_stop.py).
LOOP_STOP_SHARE = 0.6


OPENING_WORDS = 3  # "El resultado es", "Here are some": enough to name a form, few enough to repeat
_WORD_RE = re.compile(r"[^\W\d_]+|\d+")


def opening(text: str) -> str | None:
    """An answer's first words, lower-cased, numbers as '#' (None for fewer than OPENING_WORDS)."""
    words = [w if not w.isdigit() else "#" for w in _WORD_RE.findall(text.lower())[:OPENING_WORDS]]
    return " ".join(words) if len(words) == OPENING_WORDS else None


def is_looping(text: str) -> bool:
    return looped_share(text) > LOOP_STOP_SHARE
