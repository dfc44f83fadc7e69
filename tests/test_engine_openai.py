"""The OpenAI-compatible engine against real servers on 127.0.0.1 only.

- `transformers serve` with the real SmolLM2-135M-Instruct, and with the tiny Llama taught to
  translate for the translation stage (needs the `transformers[serving]` extra; skipped, with
  the reason, where it is absent).
- A small stdlib HTTP server that answers from a script (429s, 401, slow answers), for what a
  healthy model server never does on demand.

Token counts are kept tiny: on two shared CPU cores a token can take a second.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import TRANSLATIONS
from lidr.engines.base import ChatRequest, Sampling
from lidr.engines.openai import EngineError, OpenAIEngine, settle_stop
from lidr.stages.translate import CLOSE, PREFILL, translation_record, translation_requests

SERVE_START_S = 180  # model load is ~15 s alone, much more on a loaded machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ----- transformers serve with SmolLM2 -----


def _serve(model_dir: Path, tmp_path_factory):
    """`transformers serve MODEL_DIR` on a free port of 127.0.0.1; yields its URL, stops it after."""
    missing = [m for m in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"transformers serve needs {missing}: pip install 'transformers[serving]==5.23.0'")
    port = _free_port()
    tmp = tmp_path_factory.mktemp("serve")
    # HF_HUB_CACHE must exist, or GET /v1/models fails with 500 (MEASURED.md); offline: no hub.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp / "hub"),
           "TOKENIZERS_PARALLELISM": "false"}
    (tmp / "hub").mkdir()
    log_path = tmp / "serve.log"
    cmd = [sys.executable, "-c", "from transformers.cli.transformers import main; main()",
           "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health", proc, log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def serve_url(smollm2_dir: Path, tmp_path_factory) -> str:
    yield from _serve(smollm2_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def translating_serve_url(translating_model_dir: Path, tmp_path_factory) -> str:
    """The tiny Llama taught to translate (helpers.train_translating_model), served the same way."""
    yield from _serve(translating_model_dir, tmp_path_factory)


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"transformers serve not ready after {SERVE_START_S} s:\n{log_path.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def batch(serve_url):
    """One batch through the real server, concurrency 2: shared by the tests that read it."""
    engine = OpenAIEngine(serve_url, None, concurrency=2, timeout=300)
    requests = [
        ChatRequest("a", _user("Write a long story about a dragon."), max_new_tokens=3),
        ChatRequest("b", _user("What is the capital of France?"), max_new_tokens=8),
        ChatRequest("c", _user("Say hello."), max_new_tokens=6),
    ]
    seen = []
    out = engine.generate(requests, Sampling(), progress=lambda n, t: seen.append((n, t)))
    return engine, requests, out, seen


def test_batch_completions_in_order(batch):
    engine, requests, out, seen = batch
    assert [c.id for c in out] == [r.id for r in requests]
    for r, c in zip(requests, out):
        assert c.text.strip(), c
        assert c.finish_reason in ("stop", "length")
        assert 1 <= c.n_tokens <= r.max_new_tokens
    # 3 tokens cannot finish a long story: the per-request cap reached the server.
    assert out[0].finish_reason == "length" and out[0].n_tokens == 3
    assert sum(n for n, _ in seen) == 3 and sum(t for _, t in seen) == sum(c.n_tokens for c in out)


def test_batch_concurrency_limit(batch):
    engine = batch[0]
    assert engine.max_in_flight == 2  # three requests, at most two at once, and two did overlap
    assert engine.retries == 0


def test_prefilled_translation_parses(translating_serve_url, translating_model_dir):
    """The translation stage over HTTP: requests from translation_requests, completions from
    the server, records from translation_record. The served model answers the translation
    prompt, after the primer, with a fixed phrase of the target language and closes the tag
    (helpers.TRANSLATIONS); without the primer its text is noise, so an `ok` record with the
    phrase shows that the prefill reached the model."""
    # transformers serve rejects continue_final_message (422): the engine falls back to
    # /v1/completions with the prompt formatted by lidr.chat.format_chat.
    engine = OpenAIEngine(translating_serve_url, None, tokenizer_path=str(translating_model_dir), timeout=300)
    responses = [{"prompt_id": "p0", "language": "en", "response": "The cat is black.", "n_tokens": 5},
                 {"prompt_id": "p0", "language": "es", "response": "El gato es negro.", "n_tokens": 6}]
    requests = translation_requests(responses, "en", ["es", "fr"], skip_ids=set(), factor=2.0, max_new_tokens=32)
    completions = engine.generate(requests, Sampling())
    assert engine.prefill_via == "completions"
    records = [translation_record(r, c, accept_unclosed=True) for r, c in zip(requests, completions)]
    got = {(r["source_language"], r["target_language"]): (r["status"], r["translation"]) for r in records}
    assert got == {("en", "es"): ("ok", TRANSLATIONS["es"]), ("en", "fr"): ("ok", TRANSLATIONS["fr"]),
                   ("es", "en"): ("ok", TRANSLATIONS["en"])}
    for c in completions:  # ended by the stop string, kept once, nothing after it
        assert c.finish_reason == "stop" and c.text.endswith(CLOSE) and c.text.count(CLOSE) == 1


def test_prefill_without_tokenizer_is_a_clear_error(serve_url):
    engine = OpenAIEngine(serve_url, None, max_retries=0)
    req = ChatRequest("t", _user("Hi"), max_new_tokens=4, prefill=PREFILL)
    with pytest.raises(EngineError, match="tokenizer_path"):
        engine.generate([req], Sampling())


def test_unknown_model_names_the_model(serve_url):
    engine = OpenAIEngine(serve_url, "nope/unknown-model", max_retries=0)
    with pytest.raises(EngineError, match="unknown model 'nope/unknown-model'") as e:
        engine.generate([ChatRequest("x", _user("Hi"), max_new_tokens=2)], Sampling())
    assert serve_url in str(e.value)


# ----- a scripted local server -----


def chat_json(content: str, finish: str = "stop", tokens: int = 3, **choice) -> dict:
    return {
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": finish, **choice}],
        "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens},
    }


class Scripted:
    """Answers POSTs from a list of (status, json body) in turn, the last one repeating;
    records each request's headers and body, and the most requests it held at once."""

    def __init__(self, answers: list[tuple[int, dict]], delay: float = 0.0):
        self.answers, self.delay = answers, delay
        self.requests: list[tuple[dict, dict]] = []
        self.active = self.max_active = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    k = len(outer.requests)
                    outer.requests.append((dict(self.headers), body))
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                time.sleep(outer.delay)
                status, answer = outer.answers[min(k, len(outer.answers) - 1)]
                with outer.lock:
                    outer.active -= 1
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers = []

    def start(answers, delay=0.0):
        servers.append(Scripted(answers, delay))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_retries_429_then_succeeds(scripted):
    busy = {"error": {"message": "Rate limit reached", "type": "rate_limit"}}
    srv = scripted([(429, busy), (429, busy), (200, chat_json("Bonjour", tokens=2))])
    engine = OpenAIEngine(srv.url, "m", api_key_env=None, backoff=0.01)
    (c,) = engine.generate([ChatRequest("r", _user("Hi"), max_new_tokens=4)], Sampling())
    assert (c.text, c.finish_reason, c.n_tokens) == ("Bonjour", "stop", 2)
    assert engine.retries == 2 and len(srv.requests) == 3


def test_a_request_is_sent_at_its_own_temperature(scripted):
    """`generation.samples`: a prompt's extra answers carry their own temperature (and seed)."""
    srv = scripted([(200, chat_json("Hola", tokens=1))])
    engine = OpenAIEngine(srv.url, "m", api_key_env=None, concurrency=1)
    engine.generate([ChatRequest("g", _user("Hi"), max_new_tokens=4),
                     ChatRequest("h", _user("Hi"), max_new_tokens=4, temperature=0.7)], Sampling(top_p=0.9, seed=1))
    sent = {body["temperature"]: body for _, body in srv.requests}
    assert set(sent) == {0.0, 0.7}
    assert "seed" not in sent[0.0] and sent[0.7]["top_p"] == 0.9 and "seed" in sent[0.7]


def test_retries_are_bounded(scripted):
    srv = scripted([(503, {"error": "overloaded"})])
    engine = OpenAIEngine(srv.url, "m", api_key_env=None, max_retries=2, backoff=0.01)
    with pytest.raises(EngineError, match="after 2 retries"):
        engine.generate([ChatRequest("r", _user("Hi"), max_new_tokens=4)], Sampling())
    assert len(srv.requests) == 3


def test_connection_refused_is_retried_then_named():
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    engine = OpenAIEngine(url, "m", api_key_env=None, max_retries=1, backoff=0.01)
    with pytest.raises(EngineError, match="127.0.0.1") as e:
        engine.generate([ChatRequest("r", _user("Hi"), max_new_tokens=4)], Sampling())
    assert "ConnectError" in str(e.value) and engine.retries == 1


def test_401_error_never_shows_the_key(scripted, monkeypatch, caplog):
    secret = "sk-lidr-TEST-SECRET-0123456789"
    monkeypatch.setenv("LIDR_TEST_API_KEY", secret)
    # Hosted APIs echo part of a wrong key; this one echoes all of it.
    srv = scripted([(401, {"error": {"message": f"Incorrect API key provided: {secret}"}})])
    engine = OpenAIEngine(srv.url, "some-model", api_key_env="LIDR_TEST_API_KEY", backoff=0.01)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EngineError, match="authentication failed") as e:
        engine.generate([ChatRequest("r", _user("Hi"), max_new_tokens=4)], Sampling())
    msg = str(e.value)
    assert srv.url in msg and "some-model" in msg and "LIDR_TEST_API_KEY" in msg
    assert secret not in msg and "0123456789" not in msg
    assert secret not in caplog.text and secret not in repr(engine)
    assert srv.requests[0][0]["Authorization"] == f"Bearer {secret}"  # it was sent, once
    assert len(srv.requests) == 1


def test_context_length_error_is_not_retried(scripted):
    too_long = {"object": "error", "code": 400, "message": "This model's maximum context length is 2048 "
                "tokens. However, you requested 4096 tokens (96 in the messages, 4000 in the completion)."}
    srv = scripted([(400, too_long)])
    engine = OpenAIEngine(srv.url, "m", api_key_env=None, backoff=0.01)
    with pytest.raises(EngineError, match="does not fit the context") as e:
        engine.generate([ChatRequest("long-1", _user("Hi"), max_new_tokens=4000)], Sampling())
    assert "long-1" in str(e.value) and len(srv.requests) == 1


def test_concurrency_limit_seen_by_the_server(scripted):
    srv = scripted([(200, chat_json("ok"))], delay=0.2)
    engine = OpenAIEngine(srv.url, "m", api_key_env=None, concurrency=2)
    reqs = [ChatRequest(f"r{i}", _user(f"Hi {i}"), max_new_tokens=4) for i in range(6)]
    out = engine.generate(reqs, Sampling())
    assert [c.id for c in out] == [r.id for r in reqs]
    assert srv.max_active == 2 and engine.max_in_flight == 2


def test_request_body_maps_sampling_and_prefill(scripted):
    srv = scripted([(200, chat_json("Hola", stop_reason=CLOSE))])
    engine = OpenAIEngine(srv.url, "m", api_key_env=None, extra_body={"top_k": 5})
    req = ChatRequest("t", _user("Translate"), max_new_tokens=7, prefill=PREFILL, stop=(CLOSE,))
    (c,) = engine.generate([req], Sampling(temperature=0.7, top_p=0.9, repetition_penalty=1.1, seed=3))
    assert c.text == "Hola" + CLOSE  # vLLM strips the stop string and names it in stop_reason
    body = srv.requests[0][1]
    assert body["messages"][-1] == {"role": "assistant", "content": PREFILL}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert (body["model"], body["max_tokens"], body["stop"]) == ("m", 7, [CLOSE])
    assert (body["temperature"], body["top_p"], body["repetition_penalty"], body["top_k"]) == (0.7, 0.9, 1.1, 5)
    assert isinstance(body["seed"], int)


@pytest.mark.parametrize(
    "text, finish, matched, expected",
    [
        ("Hola\n</translated>", "stop", None, ("Hola\n</translated>", "stop")),  # kept by the server
        ("Hola</translated>.", "stop", None, ("Hola</translated>", "stop")),  # token overshoot cut
        ("Hola", "stop", "</translated>", ("Hola</translated>", "stop")),  # stripped and named
        ("Hola", "stop", None, ("Hola", "stop")),  # end of turn (or an unnamed stop): unchanged
        ("Hola", "length", None, ("Hola", "length")),
    ],
)
def test_settle_stop(text, finish, matched, expected):
    assert settle_stop(text, finish, matched, (CLOSE,)) == expected


def test_no_key_is_sent_unless_its_variable_is_named(scripted, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-lidr-NOT-FOR-THIS-SERVER")
    srv = scripted([(200, chat_json("Hallo", tokens=1))])
    OpenAIEngine(srv.url, "m").generate([ChatRequest("r", _user("Hi"), max_new_tokens=4)], Sampling())
    assert "Authorization" not in srv.requests[0][0]


# A server process that, like `vllm serve --api-key K`, answers /v1/models only with the key.
KEYED_SERVER = '''
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get("Authorization") == "Bearer " + sys.argv[2]
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b'{"object": "list", "data": []}' if ok else b"{}")

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


@pytest.mark.parametrize("key_set", [True, False])
def test_readiness_probe_sends_the_key(tmp_path, monkeypatch, key_set):
    from lidr.config import OpenAIOptions
    from lidr.engines.openai import openai_engine

    script = tmp_path / "keyed_server.py"
    script.write_text(KEYED_SERVER)
    if key_set:
        monkeypatch.setenv("LIDR_TEST_PROBE_KEY", "sk-probe")
    else:
        monkeypatch.delenv("LIDR_TEST_PROBE_KEY", raising=False)
    opts = OpenAIOptions(serve_command=f"{sys.executable} {script} {{port}} sk-probe --model {{model}}",
                         api_key_env="LIDR_TEST_PROBE_KEY", serve_start_timeout=8)
    if not key_set:
        with pytest.raises(EngineError, match="did not answer"):
            openai_engine(opts, "some-model")
        return
    engine = openai_engine(opts, "some-model")
    try:
        assert engine.server.proc.poll() is None  # ready, and still running
    finally:
        engine.close()
    assert engine.server.proc.poll() is not None
