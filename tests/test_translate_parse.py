"""Parsing of self-translations: tags, nesting, EOS without a closing tag."""

import json

import pytest

from lidr.stages.translate import parse_translation, translation_cap, translation_message


@pytest.mark.parametrize(
    "raw, finish, expected",
    [
        ("<translated>\nHola mundo\n</translated>", "stop", ("Hola mundo", "ok")),
        ("<translated>\n<translated>Bonjour</translated>", "stop", ("Bonjour", "ok")),  # nested opening tags
        ("<translated>\nHallo Welt", "stop", ("Hallo Welt", "ok_unclosed")),  # EOS without closing tag
        ("<translated>\nHallo Welt Welt Welt", "length", (None, "truncated")),  # ran to the limit
        ("<translated>\n\n</translated>", "stop", (None, "empty")),
        ("<translated>\n<sentence>Привет</sentence>\n</translated>", "stop", ("Привет", "ok")),
        ("<translated>\n你好</translated> extra <translated>x</translated>", "stop", ("你好", "ok")),
        ("Hola</translated>", "stop", (None, "no_open_tag")),
    ],
)
def test_parse_translation(raw, finish, expected):
    assert parse_translation(raw, finish) == expected


def test_unclosed_can_be_refused():
    assert parse_translation("<translated>\nHallo", "stop", accept_unclosed=False) == (None, "unclosed")


def test_translation_prompt_names_the_language_in_english():
    msg = translation_message("Two apples.", "de")
    assert msg[0]["role"] == "user"
    assert "into German." in msg[0]["content"]
    assert "<sentence>\nTwo apples.\n</sentence>" in msg[0]["content"]


def test_translation_cap():
    assert translation_cap(100, 2.0, 512) == 216
    assert translation_cap(400, 2.0, 512) == 512


def test_translation_cap_scales_with_the_target_script():
    assert translation_cap(100, 2.0, 4096, "en", "ru") == 886  # 2 x 4.35 x 100 + 16
    assert translation_cap(100, 2.0, 4096, "ru", "en") == 216  # never under factor x source
    assert translation_cap(100, 2.0, 4096, "en", "hi") == 1616  # unmeasured: by script (8.0)
    assert translation_cap(100, 2.0, 512, "en", "th") == 512  # the flat cap still bounds it


@pytest.mark.parametrize("lang", ["ru", "th", "de", "zh"])
def test_translation_cap_keeps_human_translations(lang, shared_data, smollm2_dir):
    """Human-aligned Alpagasus instructions, en -> xx, counted in SmolLM2's tokens: the default
    cap cuts under 2 % of them (the former 2 x source + 16 cut 88 % of Russian ones)."""
    from transformers import AutoTokenizer

    from lidr.config import TranslationConfig
    from lidr.stages.translate import CLOSE

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    folder = shared_data / "alpagasus" / "id_0_1000"
    rows = {lang_: [json.loads(line)["instruction"] for line in (folder / f"{lang_}.jsonl").open(encoding="utf-8")]
            for lang_ in ("en", lang)}
    factor = TranslationConfig().length_factor

    def n(text):
        return len(tok(text, add_special_tokens=False)["input_ids"])

    pairs = list(zip(rows["en"], rows[lang]))[:300]
    cut = sum(n(xx + "\n" + CLOSE) > translation_cap(n(en), factor, 10**6, "en", lang) for en, xx in pairs)
    assert cut / len(pairs) < 0.02
