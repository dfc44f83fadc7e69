"""Numeric answer extraction from multilingual free-text math answers (MGSM style)."""

from __future__ import annotations

import pytest

from lidr.text.answers import (
    ANSWER_PHRASES,
    answers_match,
    extract_answer,
    normalize_digits,
    parse_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("１２３４５", "12345"),                      # full-width
        ("٠١٢٣٤٥٦٧٨٩", "0123456789"),              # Arabic-Indic
        ("۰۱۲۳۴۵۶۷۸۹", "0123456789"),              # Extended Arabic-Indic (Persian)
        ("०१२३४५६७८९", "0123456789"),              # Devanagari
        ("০১২৩৪৫৬৭৮৯", "0123456789"),              # Bengali
        ("๐๑๒๓๔๕๖๗๘๙", "0123456789"),              # Thai
        ("౧౮", "18"),                              # Telugu, via unicodedata.decimal
        ("၁၈", "18"),                              # Myanmar, via unicodedata.decimal
        ("１，０００．５", "1,000.5"),              # full-width comma and full stop
        ("－７ and −7", "-7 and -7"),              # full-width hyphen, Unicode minus
        ("١٢٫٥ و ١٬٠٠٠", "12.5 و 1,000"),          # Arabic decimal / thousands separators
        ("5² apples", "5² apples"),                # superscripts are not decimal digits
        ("Janet has 16 eggs.", "Janet has 16 eggs."),
    ],
)
def test_normalize_digits(text: str, expected: str) -> None:
    assert normalize_digits(text) == expected


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        # thousands separators, every convention
        ("1,000", 1000), ("1.000", 1000), ("1 000", 1000), ("1\u00a0000", 1000),
        ("1\u202f000", 1000), ("1'000", 1000), ("1’000", 1000), ("12,345,678", 12345678),
        ("1.000.000", 1000000), ("1 000 000", 1000000), ("1,00,000", 100000),
        # decimal marks
        ("3.5", 3.5), ("3,5", 3.5), ("0.25", 0.25), ("2,75", 2.75), ("0.125", 0.125),
        ("1234.567", 1234.567), ("1.2345", 1.2345),
        # both marks: the last one is decimal
        ("1,234.5", 1234.5), ("1.234,5", 1234.5), ("1,234,567.89", 1234567.89),
        ("1.234.567,89", 1234567.89), ("1 234,5", 1234.5), ("1'234.50", 1234.5),
        # signs, sentence ends, other digit systems
        ("-7", -7), ("−7", -7), ("－７", -7), ("-1,500", -1500), ("+4", 4), ("12.", 12),
        ("1,000.", 1000), ("１８", 18), ("১,০০০", 1000), ("๑๒.๕", 12.5), ("٣٫٥", 3.5),
        ("۱۲۰", 120), ("४२", 42), (" 18 ", 18), ("0", 0),
    ],
)
def test_parse_number(token: str, expected: float) -> None:
    assert parse_number(token) == pytest.approx(expected)


@pytest.mark.parametrize(
    "token", ["", "abc", "$18", "1.2.3", "1,000,00", "12 34", "1,234.5.6", "-", "1 2345"]
)
def test_parse_number_rejects_non_numbers(token: str) -> None:
    assert parse_number(token) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # English: phrase precedence over a later number, and variants
        ("Janet sells 16 - 3 - 4 = 9 eggs. 9 * 2 = 18. The answer is 18.", 18),
        ("The answer is 18. Check: 18 - 2 = 16", 18),
        ("THE ANSWER IS 42 apples, since 6 * 7 = 42 and 42 + 0 = 42... 7", 42),
        ("Answer: $18", 18),
        ("**Answer**: 1,000 dollars. That is 500 + 500.", 1000),
        ("The final answer is **18**. (I used 3 steps.)", 18),
        ("First the answer is 5. Wait, no. The answer is 7, not 5.", 7),
        ("The answer is unclear at first. 3 + 4 = 7. The answer is seven", 7),
        ("She pays 4 + 14 = $18\n#### 18", 18),
        ("The temperature is 3 - 10 = -7 degrees. The answer is -7.", -7),
        ("It cost $18.", 18), ("He earned 18€ in total", 18), ("So 3 x 6 = 18 dollars", 18),
        ("The answer is 3.5 hours, i.e. 210 minutes", 3.5),
        # Spanish, French, German (decimal comma, space and dot grouping)
        ("Gana 9 * 2 = 18 dólares. La respuesta es 18.", 18),
        ("La respuesta es 1.000 metros; luego 1.000 / 10 = 100", 1000),
        ("Elle paie 2 × 1,75 = 3,5 €. La réponse est 3,5 €. Vérification : 2 × 1 = 2", 3.5),
        ("La réponse est 1 000 euros, car 10 × 100 = 1000.", 1000),
        ("Réponse : 1\u202f250", 1250),
        ("Die Antwort ist 1.234,5 kg. Probe: 1.000 + 234,5 = 1.234,5", 1234.5),
        ("Er hat 3 + 4 = 7 Äpfel. **Antwort:** 7", 7),
        ("Der Preis beträgt 1'500 Franken.", 1500),
        # Russian (Cyrillic)
        ("Всего 16 - 3 - 4 = 9 яиц, 9 * 2 = 18. Ответ: 18 долларов.", 18),
        ("Ответ — 25. Проверка: 5 * 5 = 25, 25 - 1 = 24", 25),
        ("ответ это 1 000 рублей (проверим: 10 * 100)", 1000),
        ("Температура упала до −7 °C", -7),
        # Chinese and Japanese (Han/Kana, full-width digits and punctuation)
        ("她每天卖9个鸡蛋，9×2=18。答案是18元。验证：18-2=16", 18),
        ("答案：１８", 18),
        ("总共１，０００．５元", 1000.5),
        ("答案: 7。再检查一次 3+4=7, 7-1=6", 7),
        ("りんごは3+4=7個です。答えは7個です。", 7),
        ("答え：２５０円（確認：250−50＝200）", 250),
        # Swahili
        ("Anauza mayai 9, kwa hiyo 9 * 2 = 18. Jibu ni 18.", 18),
        # Thai (Thai digits and Latin digits)
        ("เธอขายไข่ ๙ ฟอง ได้ ๙ × ๒ = ๑๘ บาท คำตอบคือ ๑๘ บาท ตรวจสอบ ๑๘ - ๒ = ๑๖", 18),
        ("คำตอบคือ 1,250 บาท", 1250),
        # Bengali, Hindi (Devanagari), Telugu
        ("সে ৯ × ২ = ১৮ টাকা পায়। উত্তর হল ১৮। যাচাই: ১৮ - ২ = ১৬", 18),
        ("উত্তর: ১,০০,০০০ টাকা", 100000),
        ("कुल ९ × २ = १८ रुपये। उत्तर है १८", 18),
        ("ఆమె 9 × 2 = 18 డాలర్లు సంపాదిస్తుంది. సమాధానం: 18. తనిఖీ 18 - 2 = 16", 18),
        # Arabic script (Arabic-Indic and Persian digits)
        ("تبيع ٩ بيضات، ٩ × ٢ = ١٨. الإجابة هي ١٨ دولارًا. تحقق: ١٨ - ٢ = ١٦", 18),
        ("مجموع: ۱۲۰ تومان", 120),
        ("السعر ٣٫٥ دينار", 3.5),
        # no phrase: the last number
        ("16 - 3 - 4 = 9, and 9 * 2 = 18", 18),
        ("Il reste 12.", 12),
        ("There are 3 apples and 4 pears", 4),
        # LaTeX \boxed takes precedence over an answer phrase and later numbers
        (r"So $9 \times 2 = \boxed{18}$. The answer is 20? No: 18 - 2 = 16", 18),
        (r"\boxed{1{,}000}", 1000),
        (r"\boxed{\text{\$}18} dollars, then 5 more", 18),
        (r"Ответ: $\boxed{1\,250}$ рублей", 1250),
        (r"答案是 \boxed{７}", 7),
        (r"\boxed{x} so the answer is 12", 12),  # an empty box does not hide the phrase
    ],
)
def test_extract_answer(text: str, expected: float) -> None:
    assert extract_answer(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # an answer phrase that introduces working: the result, not the first operand
        ("The answer is calculated as follows: 16 - 3 - 4 = 9; 9 * 2 = 18", 18),
        ("La respuesta es: 16 - 3 - 4 = 9 huevos, 9 * 2 = 18 dólares.", 18),
        ("So the answer is 3/4 = 0.75", 0.75),
        ("The answer is 2 + 3 = 5 apples. Check: 5 - 3 = 2", 5),
        ("Ответ: 9 × 2 = 18 долларов. Проверка: 18 / 2 = 9", 18),
        ("答案是 9×2＝18 元。验证：18-2=16", 18),
        ("The answer is 16 - 3 - 4, which leaves 9", 9),  # no "=": the sentence's last number
        # fractions
        ("The answer is 3/4.", 0.75),
        (r"The answer is $\frac{3}{4}$ of the cake", 0.75),
        (r"\boxed{\dfrac{1}{2}}", 0.5),
        ("She ate 1/2 of 8 = 4 slices", 4),
        ("Date 12/25/2020: he had 7", 7),  # a date is no fraction
    ],
)
def test_extract_answer_after_working(text: str, expected: float) -> None:
    assert extract_answer(text) == pytest.approx(expected)


@pytest.mark.parametrize(("token", "expected"), [("3/4", 0.75), ("-1/2", -0.5), ("10/4", 2.5)])
def test_parse_fraction(token: str, expected: float) -> None:
    assert parse_number(token) == pytest.approx(expected)


def test_parse_fraction_by_zero() -> None:
    assert parse_number("3/0") is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I don't know.",
        "La respuesta es dieciocho.",
        "答案是十八。",
        "Ответ: восемнадцать",
        "คำตอบคือ สิบแปด",
        r"\boxed{x}",
    ],
)
def test_extract_answer_without_number(text: str) -> None:
    assert extract_answer(text) is None


def test_answer_phrases_cover_required_languages() -> None:
    required = {"en", "es", "fr", "de", "ru", "zh", "ja", "sw", "th", "bn", "te"}
    assert required <= ANSWER_PHRASES.keys()
    assert ANSWER_PHRASES["gsm8k"] == [r"####"]


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("the answer is", 5), ("answer:", 5), ("la respuesta es", 5), ("la réponse est", 5),
        ("die antwort ist", 5), ("antwort:", 5), ("ответ:", 5), ("ответ —", 5), ("ответ это", 5),
        ("答案是", 5), ("答案：", 5), ("答案:", 5), ("答えは", 5), ("答え：", 5), ("jibu ni", 5),
        ("คำตอบคือ", 5), ("উত্তর হল", 5), ("উত্তর:", 5), ("సమాధానం", 5), ("####", 5),
    ],
)
def test_every_phrase_beats_a_later_number(phrase: str, expected: float) -> None:
    text = f"2 + 3 = 5. {phrase} 5. 5 + 1 = 6"
    assert extract_answer(text) == expected
    assert extract_answer(text.upper()) == expected  # case-insensitive


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        (1000.0, "1,000", True),
        (18.0, "18", True),
        (18.0, 18, True),
        (18.0000001, "18", True),
        (18.001, "18", False),
        (17.0, "18", False),
        (None, "18", False),
        (-7.0, "-7", True),
        (3.5, "3,5", True),
        (18.0, "$18", True),
        (18.0, "eighteen", False),
        (1234.5, 1234.5, True),
    ],
)
def test_answers_match(pred: float | None, gold: str | float, expected: bool) -> None:
    assert answers_match(pred, gold) is expected


@pytest.mark.parametrize(
    ("text", "gold"),
    [
        ("The answer is 1,000.", "1000"),
        ("La réponse est 1 000.", "1,000"),
        ("答案是１８元", "18"),
        ("উত্তর হল ১৮", "18"),
        ("Jibu ni 18.", "18"),
    ],
)
def test_extract_then_match(text: str, gold: str) -> None:
    assert answers_match(extract_answer(text), gold)
