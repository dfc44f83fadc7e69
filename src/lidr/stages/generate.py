"""Stage 1, self-generation: the model answers every prompt in its own language."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lidr.data.prompts import Prompt
from lidr.engines.base import ChatRequest, Completion
from lidr.text.templates import render


def user_content(prompt: Prompt, task_template: str | None) -> str:
    """The user turn: the prompt, wrapped by the task template when one is configured
    (filled as every template is, lidr/text/templates.py: other braces stay as they are)."""
    if task_template is None:
        return prompt.text
    return render(task_template, prompt.text, prompt.language)


def generation_requests(
    prompts: dict[str, list[Prompt]], max_new_tokens: int, task_template: str | None
) -> list[ChatRequest]:
    """One request per (prompt, language), longest prompts first so shards batch well."""
    requests = []
    for lang, items in prompts.items():
        for p in items:
            content = user_content(p, task_template)
            requests.append(
                ChatRequest(
                    id=f"{lang}:{p.id}",
                    messages=[{"role": "user", "content": content}],
                    max_new_tokens=max_new_tokens,
                    meta={"prompt_id": p.id, "language": lang, "prompt": content},
                )
            )
    # Stable order by length: deterministic shards whose requests pad little together.
    return sorted(requests, key=lambda r: -len(r.messages[0]["content"]))


def response_record(req: ChatRequest, c: Completion) -> dict[str, Any]:
    return {**req.meta, "response": c.text.strip(), "finish_reason": c.finish_reason, "n_tokens": c.n_tokens}


def response_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per language: responses, how many hit the token limit, how many are empty."""
    out: dict[str, Any] = {}
    for lang in sorted({r["language"] for r in records}):
        rows = [r for r in records if r["language"] == lang]
        finish = Counter(r["finish_reason"] for r in rows)
        out[lang] = {
            "responses": len(rows),
            "truncated": finish.get("length", 0),
            "empty": sum(1 for r in rows if not r["response"]),
        }
    return out
