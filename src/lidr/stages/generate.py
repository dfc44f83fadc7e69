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


def sample_id(base: str, sample: int) -> str:
    """A request id for answer `sample` of a prompt: the first keeps the one-answer id (so it
    is seeded, and reads, as in a one-answer run), the others get "#k"."""
    return base if sample == 0 else f"{base}#{sample}"


def generation_requests(
    prompts: dict[str, list[Prompt]], max_new_tokens: int, task_template: str | None,
    samples: int = 1, sample_temperature: float | None = None,
) -> list[ChatRequest]:
    """`samples` requests per (prompt, language), longest prompts first so shards batch well.
    Answers after the first are drawn at `sample_temperature` (None: the stage's temperature).
    A prompt whose source sets max_new_tokens (samples) gets that cap (that many answers) instead."""
    requests = []
    for lang, items in prompts.items():
        for p in items:
            content = user_content(p, task_template)
            for k in range(p.samples or samples):
                requests.append(
                    ChatRequest(
                        id=sample_id(f"{lang}:{p.id}", k),
                        messages=[{"role": "user", "content": content}],
                        max_new_tokens=p.max_new_tokens or max_new_tokens,
                        temperature=sample_temperature if k else None,
                        meta={"prompt_id": p.id, "language": lang, "prompt": content, "sample": k},
                    )
                )
    # Stable order by length: deterministic shards whose requests pad little together. First
    # answers before the others: their shards are a one-answer run's, and no shard mixes greedy
    # and sampled requests (an engine batches one temperature at a time, so a mixed shard runs
    # as two small batches).
    return sorted(requests, key=lambda r: (r.meta["sample"] > 0, -len(r.messages[0]["content"])))


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
        if any(sample_of(r) for r in rows):  # distinct answers to one prompt, when there are several
            out[lang]["distinct"] = len({(r["prompt_id"], r["response"]) for r in rows})
    return out


def sample_of(record: dict[str, Any]) -> int:
    """Which answer to its prompt a response (or a translation of one) is: 0 in a one-answer
    run, and in runs made before `generation.samples` existed."""
    return int(record.get("sample") or 0)
