"""The one place where chat messages become model input text.

Every engine that talks to a local model formats requests here, with the tokenizer's
own chat template. A prefill is appended after the generation prompt, so the model
continues an assistant turn that already starts with it.
"""

from __future__ import annotations

from typing import Any


class ChatTemplateError(ValueError):
    pass


def format_chat(tokenizer: Any, messages: list[dict[str, str]], prefill: str = "") -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')} has no chat template; "
            "lidr needs a chat model"
        )
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + prefill
