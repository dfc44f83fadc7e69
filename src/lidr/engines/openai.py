"""OpenAI-compatible server engine: vllm serve, SGLang, TGI, llama.cpp server, transformers
serve, hosted APIs.

Requests go out concurrently (an asyncio semaphore bounds how many are in flight) and come
back in the order they were given. The server holds the model and formats the chat; this
engine holds nothing heavy.

Prefill (the translation primer "<translated>\\n"): the assistant message is sent as the last
message with `continue_final_message: true, add_generation_prompt: false` (vLLM and SGLang
accept these). A server that rejects them (transformers serve 5.23 answers 422 "Unexpected
fields"; its `chat_template_kwargs` route crashes with a 500) gets the prompt on
`/v1/completions` instead, formatted here by `lidr.chat.format_chat` with the tokenizer given
as `tokenizer_path`. A server that silently ignores the fields would answer a fresh assistant
turn: for such a server pass `prefill_via="completions"`.

Stop strings: the contract (see `base.py`) is that a text ended by a stop string ends with it.
Servers differ: vLLM strips it and names it in `stop_reason`, SGLang in `matched_stop`;
transformers serve keeps it, sometimes with the rest of the token that completed it. So the
text is cut after the first stop string it contains, and a stripped one is re-appended when
the server named it. When a server strips the stop string and does not say which stop ended
the turn (OpenAI, llama.cpp, TGI), "stop" is read as end of turn and nothing is appended: for
a translation that parses as `ok_unclosed` instead of `ok`, with the same text.

Non-standard sampling: `repetition_penalty` is sent only when it is not 1.0 (vLLM, SGLang
accept it); a server that rejects it is an error, not a silent change of sampling (transformers
serve takes it through `extra_body={"generation_config": '{"repetition_penalty": 1.1}'}`).

HTTP client: see `lidr.engines.http`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from lidr.chat import format_chat
from lidr.config import GenerationConfig, OpenAIOptions
from lidr.engines.base import ChatRequest, Completion, Engine, EngineError, ProgressFn, Sampling, cut_at_stop, \
    request_sampling, request_seed
from lidr.engines.http import httpx

log = logging.getLogger(__name__)

# Server messages that mean "the prompt plus max_tokens does not fit the model's context"
# (vLLM, OpenAI, TGI, llama.cpp, SGLang wordings).
_CONTEXT_ERROR = re.compile(
    r"context[ _](length|window|size)|maximum context|too many tokens|prompt is too long"
    r"|must be <= \d+|exceeds the (model|maximum)",
    re.IGNORECASE,
)
_UNKNOWN_MODEL = re.compile(
    r"model.{0,80}(not found|does not exist|not served|unknown|pinned)|(unknown|invalid) model|model_not_found",
    re.IGNORECASE | re.DOTALL,
)
_PREFILL_FIELDS = ("continue_final_message", "add_generation_prompt")
_MAX_DELAY = 60.0  # seconds: a backoff or Retry-After longer than this is capped


def build(gen: GenerationConfig, model_path: str, *, batch_size: int | None, seed: int,
          log: Callable[[str], None]) -> Engine:
    """The engine for `engine: openai`, as `gen.openai` says (the server batches; seeds go per request)."""
    return openai_engine(gen.openai, model_path)


def openai_engine(opts: OpenAIOptions, model_path: str) -> Engine:
    """The OpenAI-compatible engine for `model_path`, on a server started for it when
    `opts.serve_command` is set. The tokenizer (for prefills sent to /v1/completions) is
    the model's own when `model_path` is a local directory."""
    tokenizer = model_path if Path(model_path).is_dir() else None
    options = dict(model=opts.model_name or model_path, api_key_env=opts.api_key_env,
                   concurrency=opts.concurrency, timeout=opts.timeout, max_retries=opts.max_retries,
                   backoff=opts.backoff, extra_body=opts.extra_body, tokenizer_path=tokenizer,
                   prefill_via=opts.prefill_via if tokenizer or opts.prefill_via == "chat" else "chat")
    if opts.serve_command is None:
        return OpenAIEngine(opts.url(), **options)
    from lidr.engines.server import ServedEngine, ServerProcess, free_port  # server.py builds on this module

    port = free_port()
    server = ServerProcess(opts.serve_command, model_path, port, opts.serve_start_timeout)
    api_key = os.environ.get(opts.api_key_env) if opts.api_key_env else None
    server.start(opts.url(port) + "/models", api_key)  # the readiness probe carries the key too
    try:
        return ServedEngine(server, OpenAIEngine(opts.url(port), **options))
    except BaseException:
        server.stop()
        raise


class _PrefillRejected(Exception):
    """The server refused `continue_final_message`: fall back to /v1/completions."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class OpenAIEngine:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None,
        *,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout: float = 120,
        max_retries: int = 5,
        backoff: float = 1.0,
        extra_body: dict | None = None,
        tokenizer_path: str | None = None,
        prefill_via: str = "chat",
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if prefill_via not in ("chat", "completions"):
            raise ValueError(f"prefill_via must be 'chat' or 'completions', got {prefill_via!r}")
        if prefill_via == "completions" and tokenizer_path is None:
            raise ValueError("prefill_via='completions' needs tokenizer_path to format the prompt")
        self.base_url = _api_root(base_url)
        self.model = model
        self.api_key_env = api_key_env
        # Read once, kept private, never shown: __repr__ below leaves it out.
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.extra_body = dict(extra_body or {})
        self.prefill_via = prefill_via
        self._tokenizer = _load_tokenizer(tokenizer_path) if tokenizer_path else None
        # Counters of the last generate() call, for progress reports and tests.
        self.max_in_flight = 0
        self.retries = 0
        self._in_flight = 0

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.base_url!r}, model={self.model!r})"

    # ----- the Engine interface -----

    def generate(
        self, requests: list[ChatRequest], sampling: Sampling, progress: ProgressFn | None = None
    ) -> list[Completion]:
        if not requests:
            return []
        return _run_sync(self._generate_all(list(requests), sampling, progress))

    def close(self) -> None:
        """Nothing to release: the server holds the model, and each generate() closes its client."""

    # ----- concurrency -----

    async def _generate_all(
        self, requests: list[ChatRequest], sampling: Sampling, progress: ProgressFn | None
    ) -> list[Completion]:
        self.max_in_flight = self.retries = self._in_flight = 0
        limit = asyncio.Semaphore(self.concurrency)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=self.timeout, limits=limits) as client:

            async def one(req: ChatRequest) -> Completion:
                async with limit:
                    self._in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self._in_flight)
                    try:
                        c = await self._complete(client, req, sampling)
                    finally:
                        self._in_flight -= 1
                if progress:
                    progress(1, c.n_tokens)
                return c

            tasks = [asyncio.ensure_future(one(r)) for r in requests]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                # One request failed for good: stop the others before the client closes.
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    # ----- one request -----

    async def _complete(self, client: Any, req: ChatRequest, sampling: Sampling) -> Completion:
        if req.prefill and self.prefill_via == "completions":
            return await self._via_completions(client, req, sampling)
        try:
            return await self._via_chat(client, req, sampling)
        except _PrefillRejected as e:
            if self._tokenizer is None:
                raise EngineError(
                    f"{self._where()} rejects continue_final_message, which a prefilled request "
                    f"({req.id}) needs: pass tokenizer_path so that lidr formats the prompt itself "
                    f"and uses /v1/completions ({e})"
                ) from None
            if self.prefill_via == "chat":
                log.warning("%s rejects continue_final_message; prefilled requests go to /v1/completions",
                            self._where())
            self.prefill_via = "completions"  # sticky: later requests skip the rejected call
            return await self._via_completions(client, req, sampling)

    async def _via_chat(self, client: Any, req: ChatRequest, sampling: Sampling) -> Completion:
        body: dict[str, Any] = {"messages": list(req.messages)}
        if req.prefill:
            body["messages"].append({"role": "assistant", "content": req.prefill})
            body.update(continue_final_message=True, add_generation_prompt=False)
        data = await self._post(client, "/chat/completions", self._body(body, req, sampling), req)
        choice = _first_choice(data, self._where())
        text = (choice.get("message") or {}).get("content") or ""
        return _completion(req, text, choice, data)

    async def _via_completions(self, client: Any, req: ChatRequest, sampling: Sampling) -> Completion:
        body = {"prompt": self._completion_prompt(req)}
        data = await self._post(client, "/completions", self._body(body, req, sampling), req)
        choice = _first_choice(data, self._where())
        return _completion(req, choice.get("text") or "", choice, data)

    def _body(self, body: dict[str, Any], req: ChatRequest, s: Sampling) -> dict[str, Any]:
        if self.model:
            body["model"] = self.model  # omitted: the server's only (or default) model
        s = request_sampling(s, req)
        body["max_tokens"] = req.max_new_tokens
        body["temperature"] = s.temperature
        if s.temperature > 0:
            body["top_p"] = s.top_p
            body["seed"] = request_seed(s.seed, req.id)  # greedy needs none
        if s.repetition_penalty != 1.0:
            body["repetition_penalty"] = s.repetition_penalty
        if req.stop:
            body["stop"] = list(req.stop)
        body.update(self.extra_body)
        return body

    def _completion_prompt(self, req: ChatRequest) -> str:
        tok = self._tokenizer
        text = format_chat(tok, req.messages, req.prefill)
        # The server tokenizes the prompt with special tokens on (vLLM, transformers serve):
        # where the tokenizer itself adds BOS, a template that also writes it would give two.
        bos = tok.bos_token
        if bos and text.startswith(bos) and tok("a").input_ids[:1] == [tok.bos_token_id]:
            text = text[len(bos) :]
        return text

    # ----- HTTP, retries, errors -----

    async def _post(self, client: Any, path: str, body: dict[str, Any], req: ChatRequest) -> dict[str, Any]:
        url = self.base_url + path
        for attempt in range(self.max_retries + 1):
            try:
                return await self._post_once(client, url, body, req)
            except _Retryable as e:
                if attempt == self.max_retries:
                    raise EngineError(
                        f"{self._where()}: request {req.id} failed after {self.max_retries} retries ({e})"
                    ) from None
                delay = e.retry_after if e.retry_after is not None else self.backoff * 2**attempt
                # A little jitter so that many waiting requests do not return all at once.
                delay = min(delay, _MAX_DELAY) * (1 + 0.1 * random.random())
                self.retries += 1
                log.warning("%s: %s; retry %d/%d in %.1fs", self._where(), e, attempt + 1, self.max_retries, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _post_once(self, client: Any, url: str, body: dict[str, Any], req: ChatRequest) -> dict[str, Any]:
        try:
            r = await client.post(url, json=body)
        except httpx.TransportError as e:  # connection refused or reset, timeouts
            raise _Retryable(f"{type(e).__name__} on {url}") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise _Retryable(f"HTTP {r.status_code}", _retry_after(r.headers.get("retry-after")))
        if r.status_code >= 300:
            raise self._client_error(r.status_code, self._detail(r), body, req)
        try:
            return r.json()
        except ValueError:
            snippet = self._redact(r.text[:200])
            raise EngineError(f"{self._where()} answered {url} with non-JSON: {snippet!r}") from None

    def _client_error(self, code: int, detail: str, body: dict[str, Any], req: ChatRequest) -> Exception:
        where = self._where()
        if code in (401, 403):
            # The server's text is left out: some echo part of the key ("Incorrect API key sk-ab...").
            if self._api_key:
                hint = f"check the API key in the environment variable {self.api_key_env}"
            elif self.api_key_env:
                hint = f"no API key was sent: set the environment variable {self.api_key_env}"
            else:
                hint = "no API key was sent (api_key_env is None)"
            return EngineError(f"authentication failed (HTTP {code}) at {where}: {hint}")
        if body.get("continue_final_message") and any(f in detail for f in _PREFILL_FIELDS):
            return _PrefillRejected(detail)
        if "repetition_penalty" in body and "repetition_penalty" in detail:
            return EngineError(
                f"{where} rejects repetition_penalty (not part of the OpenAI API): set it to 1.0, or pass "
                f"the server's own field in extra_body ({detail})"
            )
        if code != 404 and _CONTEXT_ERROR.search(detail):
            return EngineError(
                f"request {req.id} does not fit the context of {where}: prompt plus max_new_tokens="
                f"{req.max_new_tokens} is too long (HTTP {code}): {detail}"
            )
        # vLLM and OpenAI answer 404; transformers serve 400 "pinned to X; requested Y".
        if code == 404 or _UNKNOWN_MODEL.search(detail) or (self.model and self.model in detail):
            return EngineError(
                f"unknown model {self.model!r} at {self.base_url} (HTTP {code}; or no such endpoint: "
                f"base_url should end with the API root, such as /v1): {detail}"
            )
        return EngineError(f"HTTP {code} from {where} for request {req.id}: {detail}")

    def _detail(self, r: Any) -> str:
        """The server's error message, short and with the key removed."""
        try:
            data = r.json()
        except ValueError:
            return self._redact(r.text[:300])
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict):
            err = err.get("message") or err.get("detail") or err
        return self._redact(str(err)[:300])

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "<redacted>") if self._api_key else text

    def _where(self) -> str:
        return f"server {self.base_url} (model {self.model or '<server default>'})"


# ----- helpers -----


def _api_root(base_url: str) -> str:
    """`http://host:8000` and `http://host:8000/v1/` both mean the API root `http://host:8000/v1`;
    a URL with another path (a hosted API's `/v1beta/openai`) is kept as given."""
    url = base_url.rstrip("/")
    if not urlsplit(url).scheme:
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    return url if urlsplit(url).path else url + "/v1"


def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _first_choice(data: Any, where: str) -> dict[str, Any]:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise EngineError(f"{where} answered without choices: {str(data)[:200]!r}")
    return choices[0]


def _completion(req: ChatRequest, text: str, choice: dict[str, Any], data: dict[str, Any]) -> Completion:
    # vLLM names the stop string that ended generation in stop_reason, SGLang in matched_stop
    # (both may also hold a token id, or null for end of turn).
    matched = choice.get("stop_reason") or choice.get("matched_stop")
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    text, finish = settle_stop(text, finish, matched if isinstance(matched, str) else None, req.stop)
    n_tokens = int(((data.get("usage") or {}).get("completion_tokens")) or 0)
    return Completion(req.id, text, finish, n_tokens)


def settle_stop(text: str, finish: str, matched: str | None, stops: tuple[str, ...]) -> tuple[str, str]:
    """Make a text ended by a stop string end with exactly that string (the engine contract)."""
    text, stopped = cut_at_stop(text, stops)
    if stopped:  # kept by the server, maybe with the rest of the token that completed it
        return text, "stop"
    if finish == "stop" and matched in stops:  # stripped by the server, which said which
        return text + matched, "stop"
    return text, finish


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def _run_sync(coro: Any) -> Any:
    """asyncio.run, also from a thread that already runs an event loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
