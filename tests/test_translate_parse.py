"""Parsing of self-translations: tags, nesting, EOS without a closing tag."""

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
