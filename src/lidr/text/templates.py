"""Prompt templates: the named presets and the one way a template is filled.

A template is a preset's name or a text with `{prompt}` where the prompt (a question, an
instruction) goes; `{question}` is the same placeholder under the name math templates used
first, so either works. `{language}` is the prompt language's English name. The generation
stage (`generation.task_template`) and the mgsm evaluation (`template`) both use them.

Filled by plain replacement, never str.format: a template may hold other braces (LaTeX
`\\boxed{}`) that format() would reject.
"""

from __future__ import annotations

import re

from lidr.errors import ConfigError
from lidr.languages import get_language

# Short and explicit: a 135M model follows one instruction per sentence better than a
# paragraph. The English closing phrase is deliberate: `extract_answer` knows it, and it is
# too short to change the language detected for a whole worked answer.
MGSM_TEMPLATE = (
    "{prompt}\n\n"
    "Solve this problem step by step. Write your reasoning and your answer in {language}. "
    'End with a final line "The answer is N", where N is the final number.'
)

# The paper's arithmetic wrapper (Yang et al. 2025, §4.1): the model is asked to answer in
# the prompt's own language.
PAPER_MATH_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request in {language}. Please answer in {language}.\n\n"
    "### Instruction:\n{prompt}\n\n### Response:"
)

TEMPLATE_PRESETS: dict[str, str] = {"mgsm": MGSM_TEMPLATE, "paper_math": PAPER_MATH_TEMPLATE}

TEXT_PLACEHOLDERS = ("{prompt}", "{question}")
_PLACEHOLDER_RE = re.compile(r"\{(prompt|question|language)\}")


def has_text_placeholder(template: str) -> bool:
    return any(p in template for p in TEXT_PLACEHOLDERS)


NOT_A_TEMPLATE = (f"neither a known name ({', '.join(TEMPLATE_PRESETS)}) "
                  "nor a template with a {prompt} (or {question}) placeholder")


def is_template(template: str) -> bool:
    """A preset's name, or a text with the placeholder for the prompt."""
    return template in TEMPLATE_PRESETS or has_text_placeholder(template)


def resolve_template(template: str) -> str:
    """The text of a preset, or a custom template as given; anything else is refused."""
    if not is_template(template):
        raise ConfigError(f"template {template!r} is {NOT_A_TEMPLATE}")
    return TEMPLATE_PRESETS.get(template, template)


def render(template: str, text: str, language: str) -> str:
    """Fill a template's text placeholder with `text` and `{language}` with the English name
    of the language code `language`. One pass: text that itself holds "{language}" or
    "{prompt}" is left as it is."""
    name = get_language(language).name
    return _PLACEHOLDER_RE.sub(lambda m: name if m.group(1) == "language" else text, template)
