"""Language registry: ISO 639-1 code -> English name, native name, script.

The English name is what the paper's prompts use ("translate into {Language}",
"Please answer in {language}"); the code is what language identification returns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    native: str
    script: str


_TABLE = [
    ("en", "English", "English", "Latin"),
    ("es", "Spanish", "Español", "Latin"),
    ("fr", "French", "Français", "Latin"),
    ("de", "German", "Deutsch", "Latin"),
    ("it", "Italian", "Italiano", "Latin"),
    ("pt", "Portuguese", "Português", "Latin"),
    ("nl", "Dutch", "Nederlands", "Latin"),
    ("pl", "Polish", "Polski", "Latin"),
    ("cs", "Czech", "Čeština", "Latin"),
    ("ro", "Romanian", "Română", "Latin"),
    ("sv", "Swedish", "Svenska", "Latin"),
    ("da", "Danish", "Dansk", "Latin"),
    ("fi", "Finnish", "Suomi", "Latin"),
    ("hu", "Hungarian", "Magyar", "Latin"),
    ("tr", "Turkish", "Türkçe", "Latin"),
    ("vi", "Vietnamese", "Tiếng Việt", "Latin"),
    ("id", "Indonesian", "Bahasa Indonesia", "Latin"),
    ("ms", "Malay", "Bahasa Melayu", "Latin"),
    ("sw", "Swahili", "Kiswahili", "Latin"),
    ("yo", "Yoruba", "Yorùbá", "Latin"),
    ("ru", "Russian", "Русский", "Cyrillic"),
    ("uk", "Ukrainian", "Українська", "Cyrillic"),
    ("bg", "Bulgarian", "Български", "Cyrillic"),
    ("sr", "Serbian", "Српски", "Cyrillic"),
    ("el", "Greek", "Ελληνικά", "Greek"),
    ("zh", "Chinese", "中文", "Han"),
    ("ja", "Japanese", "日本語", "Japanese"),
    ("ko", "Korean", "한국어", "Hangul"),
    ("ar", "Arabic", "العربية", "Arabic"),
    ("fa", "Persian", "فارسی", "Arabic"),
    ("ur", "Urdu", "اردو", "Arabic"),
    ("he", "Hebrew", "עברית", "Hebrew"),
    ("hi", "Hindi", "हिन्दी", "Devanagari"),
    ("mr", "Marathi", "मराठी", "Devanagari"),
    ("ne", "Nepali", "नेपाली", "Devanagari"),
    ("bn", "Bengali", "বাংলা", "Bengali"),
    ("te", "Telugu", "తెలుగు", "Telugu"),
    ("ta", "Tamil", "தமிழ்", "Tamil"),
    ("th", "Thai", "ไทย", "Thai"),
]

LANGUAGES: dict[str, Language] = {row[0]: Language(*row) for row in _TABLE}


class UnknownLanguageError(ValueError):
    pass


def get_language(code: str) -> Language:
    """Look a language up by ISO 639-1 code; the error lists the known codes."""
    try:
        return LANGUAGES[code]
    except KeyError:
        known = ", ".join(sorted(LANGUAGES))
        raise UnknownLanguageError(
            f"unknown language code {code!r} (known: {known})"
        ) from None
