"""A model server that lidr starts and stops itself (`generation.openai.serve_command`).

Each iteration generates with a different model (M0, then M1, ...), and an
OpenAI-compatible server serves one model: so lidr starts the user's command for the
model it is about to run (`vllm serve {model} --port {port}`, `transformers serve {model}
--port {port}`, ...), waits until `GET /v1/models` answers, sends the stage's requests
through the `openai` engine, and stops the server (its whole process group) before
training needs the accelerator.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from lidr.engines.base import ChatRequest, Completion, Engine, EngineError, ProgressFn, Sampling
from lidr.engines.http import httpx

POLL_S = 1.0
STOP_GRACE_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`command` with {model} and {port} filled in, run in its own process group."""

    def __init__(self, command: str, model: str, port: int, start_timeout: float, log_dir: Path | None = None):
        self.argv = shlex.split(command.format(model=shlex.quote(model), port=port))
        self.port = port
        self.start_timeout = start_timeout
        fd, path = tempfile.mkstemp(prefix="lidr-server-", suffix=".log", dir=log_dir)
        os.close(fd)
        self.log_path = Path(path)
        self.proc: subprocess.Popen | None = None

    def start(self, models_url: str, api_key: str | None = None) -> None:
        """Start the command and wait until `models_url` answers; `api_key` goes with each
        probe, as with every request, so a server started with `--api-key` becomes ready."""
        with open(self.log_path, "wb") as log:
            try:
                self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as err:
                raise EngineError(f"serve_command could not start {self.argv[0]!r}: {err}") from None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"model server exited with code {self.proc.returncode} before answering "
                                  f"({' '.join(self.argv)}); last log lines:\n{self.log_tail()}")
            if _answers(models_url, api_key):
                return
            time.sleep(POLL_S)
        self.stop()
        raise EngineError(f"model server did not answer {models_url} within {self.start_timeout:.0f} s "
                          f"(serve_start_timeout); last log lines:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

    def log_tail(self, n: int = 15) -> str:
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:])


def _answers(url: str, api_key: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        return httpx.get(url, headers=headers, timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


class ServedEngine:
    """An engine (the `openai` one) on a server started for this model; `close()` stops the server."""

    name = "openai"

    def __init__(self, server: ServerProcess, engine: Engine):
        self.server = server
        self.engine = engine

    def generate(self, requests: list[ChatRequest], sampling: Sampling,
                 progress: ProgressFn | None = None) -> list[Completion]:
        return self.engine.generate(requests, sampling, progress)

    def close(self) -> None:
        self.engine.close()
        self.server.stop()
        self.server.log_path.unlink(missing_ok=True)
