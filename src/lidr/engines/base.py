"""The engine interface: chat requests in, completions out.

Stages build `ChatRequest`s and read `Completion`s; they never know which engine ran
them. An engine formats each request through the model's chat template (see
`lidr.chat`), so a prefilled assistant turn means the same thing on every engine.
"""

from __future__ import annotations

import gc
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

from lidr.text.quality import is_looping


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
    # The text is of no use once it loops (a translation: the gates drop a looping or cut-off
    # one), so an engine that can may end it early, as cut off (finish_reason "length").
    stop_on_loop: bool = False
    # This request's sampling temperature when not the stage's (a prompt's extra answers,
    # `generation.sample_temperature`); None: the stage's.
    temperature: float | None = None
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
    """`text` cut after the first stop string it contains, keeping that string; and whether one was found.

    "First" is the one that ends first: where generation, which checks after every token,
    stopped. Every engine cuts its text here, so all of them end a text at the same place.
    """
    ends = [k + len(s) for s in stops if (k := text.find(s)) >= 0]
    if not ends:
        return text, False
    return text[: min(ends)], True


def request_sampling(sampling: Sampling, request: ChatRequest) -> Sampling:
    """The sampling settings of one request: the stage's, at the request's own temperature if it has one."""
    return sampling if request.temperature is None else replace(sampling, temperature=request.temperature)


def request_seed(seed: int, request_id: str, *, bits: int = 31) -> int:
    """The sampling seed for one request (or a batch, from its first request's id).

    From the id, not the position: the same request samples the same text in any batch,
    and a resumed run regenerates it. Reduced to `bits` bits: vLLM, CTranslate2 and servers
    take a 31-bit seed; torch takes 64 bits (the hf engine's seeds, unreduced).
    """
    return (seed + zlib.crc32(request_id.encode())) % 2**bits


def free_accelerator_memory() -> None:
    """Collect a closed model's objects, then give PyTorch's cached GPU memory back, so that
    training (or the next engine) gets the memory."""
    import torch  # here: the openai engine runs without loading torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def in_sorted_batches(requests: list[ChatRequest], lengths: list[int], batch_size: int,
                      run_batch: Callable[[list[int]], list[Completion]], progress: ProgressFn | None = None,
                      sort: bool = True, workers: int = 1) -> list[Completion]:
    """Run `requests` in batches of similar prompt length and cap, in the order given back.

    `run_batch` gets the indices of one batch and returns their completions. Sorting by
    (length, cap) makes a batch pad little and end together; ties keep their positions, so
    the batches (and a resumed run's) are the same every time. A batch never mixes stop
    strings: an engine that stops a batch on a stop string (transformers' `stop_strings`)
    would otherwise end a row on another row's. Nor temperatures: a batch samples at one
    (`request_sampling` of its first request). `workers` > 1: that many batches run at once
    (from threads; for an engine whose batches release the GIL), reported in order.
    """
    order = list(range(len(requests)))
    if sort:
        order.sort(key=lambda i: (lengths[i], requests[i].max_new_tokens, i))
    out: list[Completion | None] = [None] * len(requests)
    kinds = [(r.stop, r.temperature) for r in requests]
    batches = _batches(order, kinds, batch_size)
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        results = pool.map(run_batch, batches) if pool else map(run_batch, batches)
        for idx, batch in zip(batches, results):
            for i, c in zip(idx, batch):
                out[i] = c
            if progress:
                progress(len(idx), sum(c.n_tokens for c in batch))
    return out  # type: ignore[return-value]


def _batches(order: list[int], kinds: list[Any], batch_size: int) -> list[list[int]]:
    """`order` cut into batches of at most `batch_size`, each of one kind (stop strings and
    temperature; in the order each kind first appears, so requests of one kind keep their order)."""
    groups: dict[Any, list[int]] = {}
    for i in order:
        groups.setdefault(kinds[i], []).append(i)
    return [g[k: k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]


# `stop_on_loop`: the text is checked every LOOP_CHECK_EVERY tokens from LOOP_MIN_TOKENS on
# (decoding a row costs about as much as a few decode steps of a small model).
LOOP_MIN_TOKENS = 64
LOOP_CHECK_EVERY = 16


def ends_in_loop(req: ChatRequest, ids: list[int], decode: Callable[[list[int]], str],
                 every: int = LOOP_CHECK_EVERY) -> bool:
    """Whether a `stop_on_loop` row with these generated ids loops, so it should end now.
    Checked when the count is a multiple of `every` (an engine that looks at its rows once
    per round of several tokens passes 1)."""
    n = len(ids)
    return req.stop_on_loop and n >= LOOP_MIN_TOKENS and n % every == 0 and is_looping(decode(ids))
