"""The engine interface: chat requests in, completions out.

Stages build `ChatRequest`s and read `Completion`s; they never know which engine ran
them. An engine formats each request through the model's chat template (see
`lidr.chat`), so a prefilled assistant turn means the same thing on every engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


class EngineError(ValueError):
    """An engine that cannot run or a server error that retrying will not fix; the message
    names the engine, server or model."""


@dataclass(frozen=True)
class ChatRequest:
    id: str
    messages: list[dict[str, str]]
    max_new_tokens: int
    # Text the assistant turn starts with (the translation primer "<translated>\n").
    prefill: str = ""
    stop: tuple[str, ...] = ()
    # Carried through for the stage that built the request; never sent to a model.
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Completion:
    id: str
    # Generated text after the prefill. When a stop string ended generation, the text
    # ends with it (so a caller can tell a closing tag from an end-of-turn).
    text: str
    finish_reason: str  # "stop" (end of turn or stop string) or "length" (hit max_new_tokens)
    n_tokens: int


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0


ProgressFn = Callable[[int, int], None]  # (requests finished, tokens generated) since last call


class Engine(Protocol):
    name: str

    def generate(
        self, requests: list[ChatRequest], sampling: Sampling, progress: ProgressFn | None = None
    ) -> list[Completion]:
        """One completion per request, in the order of `requests`."""
        ...

    def close(self) -> None:
        """Release the model (and accelerator memory) before training starts."""
        ...


def cut_at_stop(text: str, stops: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """`text` cut after the first stop string it contains, keeping that string; and whether one was found."""
    found = [(k, s) for s in stops if (k := text.find(s)) >= 0]
    if not found:
        return text, False
    k, s = min(found)
    return text[: k + len(s)], True
