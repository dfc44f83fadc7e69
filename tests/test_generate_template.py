"""The generation stage's user turn: task templates filled by plain replacement."""

from lidr.text.templates import PAPER_MATH_TEMPLATE
from lidr.data.prompts import Prompt
from lidr.stages.generate import generation_requests, user_content


def test_template_with_latex_braces():
    template = r"{prompt}\nAnswer in {language}; put the final number in \boxed{}."
    p = Prompt(id="1", language="es", text="¿Cuánto es 2 + 3?")
    assert user_content(p, template) == "¿Cuánto es 2 + 3?\\nAnswer in Spanish; put the final number in \\boxed{}."


def test_prompt_text_with_braces_is_left_alone():
    p = Prompt(id="1", language="de", text="Was ist {x} in f(x) = {prompt}?")
    content = user_content(p, PAPER_MATH_TEMPLATE)
    assert "in German. Please answer in German." in content
    assert "### Instruction:\nWas ist {x} in f(x) = {prompt}?\n\n### Response:" in content


def test_requests_carry_the_filled_template():
    prompts = {"en": [Prompt("a", "en", "Two plus two?")], "fr": [Prompt("a", "fr", "Deux plus deux ?")]}
    reqs = generation_requests(prompts, 32, r"\boxed{} {prompt} ({language})")
    assert {r.messages[0]["content"] for r in reqs} == {r"\boxed{} Two plus two? (English)",
                                                         r"\boxed{} Deux plus deux ? (French)"}
