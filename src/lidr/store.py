"""The run directory on disk: atomic writes, parquet shards, stage completion markers.

A stage directory holds `shard_NNNNN.parquet` files and, once complete, `_done.json`.
Every file is written to a temporary name, synced to disk and renamed, so a process
killed at any moment (or a machine losing power) leaves either the old state or the new
one, never half a file. State damaged anyway (a file cut by a full disk, deleted or
edited by hand) is found on resume: a bad shard is redone with a warning naming it, and
every error about a damaged file names that file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from lidr.engines.base import ChatRequest, Completion, Engine, Sampling

DONE = "_done.json"
PLAN = "_plan.json"


class RunDirError(ValueError):
    pass


class DamagedFileError(RunDirError):
    """A file of the run directory that cannot be read back; the message names it."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path} is damaged ({why}); delete it and run again to redo it")
        self.path, self.why = path, why


def _tmp_name(path: Path) -> Path:
    # Host and pid: workers on several machines may write into one shared run directory.
    return path.with_name(f".{path.name}.tmp.{socket.gethostname()}.{os.getpid()}")


def _replace_synced(tmp: Path, path: Path) -> None:
    """Rename a fully synced temp file into place, then sync the directory entry."""
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())  # without it a crash can leave the renamed file empty
    _replace_synced(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_json(path: Path) -> Any:
    """`read_json` for the run's own files: a cut or garbled file is a `DamagedFileError` naming it."""
    try:
        return read_json(path)
    except UnicodeDecodeError:
        raise DamagedFileError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise DamagedFileError(path, f"not valid JSON at line {err.lineno}: {err.msg}") from None


def write_parquet_atomic(path: Path, records: list[dict[str, Any]], metadata: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(records)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    tmp = _tmp_name(path)
    with tmp.open("wb") as f:
        pq.write_table(table, f)
        f.flush()
        os.fsync(f.fileno())
    _replace_synced(tmp, path)


def read_table(path: Path) -> pa.Table:
    """One parquet file of the run; an unreadable one is a `DamagedFileError` naming it."""
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DamagedFileError(path, f"not a readable parquet file: {first}") from None


def read_records(stage_dir: Path) -> list[dict[str, Any]]:
    """All rows of a stage's shards (or its single file), in shard order."""
    rows: list[dict[str, Any]] = []
    for f in sorted(stage_dir.glob("*.parquet")):
        rows += read_table(f).to_pylist()
    return rows


def is_done(stage_dir: Path) -> bool:
    return (stage_dir / DONE).is_file()


Log = Callable[[str], None]


def _warn(log: Log | None, message: str) -> None:
    if log:
        log(f"[yellow]warning:[/yellow] {message}")


def previous_done(stage_dir: Path, log: Log | None = None) -> dict[str, Any] | None:
    """The stage's `_done.json` when it can be read; a damaged one is removed with a warning."""
    path = stage_dir / DONE
    if not path.is_file():
        return None
    try:
        done = load_json(path)
        if not isinstance(done, dict):
            raise DamagedFileError(path, f"a JSON {type(done).__name__}, expected an object")
        return done
    except DamagedFileError as err:
        _warn(log, f"{err.path} is damaged; the stage is checked and redone where needed")
        path.unlink(missing_ok=True)
        return None


def _missing_shards(stage_dir: Path) -> list[Path]:
    """Shards the stage's plan calls for that are not on disk (none known without a plan)."""
    try:
        plan = load_json(stage_dir / PLAN)
        n = -(-int(plan["n_requests"]) // int(plan["shard_size"]))
    except (DamagedFileError, OSError, KeyError, TypeError, ValueError):
        return []
    return [p for k in range(n) if not (p := stage_dir / f"shard_{k:05d}.parquet").is_file()]


def stage_problem(stage_dir: Path, done: dict[str, Any]) -> str | None:
    """Why the files of a finished stage disagree with its `_done.json` (None: they agree).

    A shard missing, unreadable, or with other rows than recorded means the stage must be
    redone: using what is left would silently train on fewer rows.
    """
    missing = _missing_shards(stage_dir)
    if missing:
        return f"{missing[0]} is missing"
    try:
        records = read_records(stage_dir)
    except DamagedFileError as err:
        return f"{err.path} is damaged ({err.why})"
    if "n" in done and len(records) != done["n"]:
        return f"{stage_dir} holds {len(records)} rows, its {DONE} records {done['n']}"
    if "hash" in done and content_hash(records) != done["hash"]:
        return f"{stage_dir} holds other rows than its {DONE} records (hash {content_hash(records)} != {done['hash']})"
    return None


def finished(stage_dir: Path, log: Log | None = None) -> bool:
    """True when the stage has a readable `_done.json` that its files agree with.

    A disagreement is logged as a warning naming the file; the stage then runs again and
    redoes only what is bad (its `_done.json`, if readable, stays to check the redone rows).
    """
    done = previous_done(stage_dir, log)
    if done is None:
        return False
    problem = stage_problem(stage_dir, done)
    if problem:
        _warn(log, f"{problem}; redoing it")
        return False
    return True


def check_redone(stage_dir: Path, old: dict[str, Any] | None, summary: dict[str, Any]) -> None:
    """A stage redone after damage must reproduce the rows later stages were built from."""
    if old and "hash" in old and old["hash"] != summary.get("hash"):
        raise RunDirError(
            f"{stage_dir} was redone with other rows than before (hash {summary.get('hash')} != {old['hash']}); "
            f"later stages were built from the old rows: delete {stage_dir.parent} to redo the iteration")


def clean_stale_tmp(run_dir: Path, log: Log | None = None) -> int:
    """Remove temp files left by killed processes of this host (another host's may still be in use)."""
    host, removed = socket.gethostname(), 0
    for tmp in run_dir.rglob(".*.tmp.*"):
        owner_host, _, pid = tmp.name.rpartition(".tmp.")[2].rpartition(".")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)) or not tmp.is_file():
            continue
        tmp.unlink(missing_ok=True)
        removed += 1
    if removed:
        _warn(log, f"removed {removed} temp file(s) left by an interrupted run in {run_dir}")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(run_dir: Path, worker: Worker) -> Iterator[None]:
    """Hold the run directory for this worker index, or refuse with the holder's pid and host.

    An OS lock (flock) on `.lock-<worker index>`: the kernel releases it when the process
    ends, however it ends, so a killed run never leaves the directory locked. The file
    only records who holds it, for the message.
    """
    path = run_dir / f".lock-{worker.index}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # an existing file is left as it is
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").split()
        os.close(fd)
        pid, host = (holder + ["?", "?"])[:2]
        who = f"worker {worker.index} of " if worker.count > 1 else ""
        raise RunDirError(f"{run_dir} is in use by another {who}lidr run (pid {pid} on host {host}); "
                          "wait for it to end or stop it, or use another --output") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def content_hash(records: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _shard_seconds(path: Path) -> float:
    meta = pq.read_schema(path).metadata or {}
    return float(meta.get(b"lidr_seconds", 0.0))


ToRecord = Callable[[ChatRequest, Completion], dict[str, Any]]
OnShard = Callable[[int, int, int, float], None]  # shard index, shard count, tokens, seconds
WAIT_POLL_S = 2.0
WAIT_LOG_S = 60.0


@dataclass(frozen=True)
class Worker:
    """This process's part of a data-parallel stage: shards k with k % count == index.

    Several workers (a SLURM array, Ray tasks, machines sharing a file system) run the same
    command on one run directory; each writes only its own shards, so a worker killed and
    started again resumes like a single process does.
    """

    index: int = 0
    count: int = 1

    def owns(self, shard: int) -> bool:
        return shard % self.count == self.index

    @property
    def is_main(self) -> bool:
        return self.index == 0


def wait_until(ready: Callable[[], bool], what: Callable[[], str], log: Callable[[str], None] | None) -> None:
    """Poll until `ready()`: another worker is finishing its part. Logs what it waits for."""
    last = 0.0
    while not ready():
        if log and time.monotonic() - last >= WAIT_LOG_S:
            log(f"waiting for {what()}")
            last = time.monotonic()
        time.sleep(WAIT_POLL_S)


def run_sharded(
    stage_dir: Path,
    requests: list[ChatRequest],
    engine_factory: Callable[[], Engine],
    sampling: Sampling,
    shard_size: int,
    to_record: ToRecord,
    on_progress: Callable[[int, int], None] | None = None,
    on_shard: OnShard | None = None,
    worker: Worker = Worker(),
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run `requests` through an engine in shards, skipping shards already on disk.

    The shard plan (which request goes in which shard) is fixed by the request order and
    saved; a resumed stage must see the same plan, so its output equals an uninterrupted
    run's. A `worker` of several runs only its own shards, then waits for the others'.
    Returns the stage summary written to `_done.json`.
    """
    shards = [requests[i : i + shard_size] for i in range(0, len(requests), shard_size)]
    plan = {"n_requests": len(requests), "shard_size": shard_size, "ids_hash": _ids_hash(requests)}
    _check_plan(stage_dir, plan, log)
    engine = None
    for k, shard in enumerate(shards):
        path = stage_dir / f"shard_{k:05d}.parquet"
        if not worker.owns(k):
            continue
        if path.is_file() and _shard_ok(path, shard, log):
            if on_progress:
                on_progress(len(shard), 0)
            continue
        engine = engine or engine_factory()
        t0 = time.perf_counter()
        completions = engine.generate(shard, sampling, on_progress)
        seconds = time.perf_counter() - t0
        records = [to_record(r, c) for r, c in zip(shard, completions)]
        write_parquet_atomic(path, records, {"lidr_seconds": f"{seconds:.3f}", "lidr_ids": _ids_hash(shard)})
        if on_shard:
            on_shard(k, len(shards), sum(c.n_tokens for c in completions), seconds)
    if worker.count > 1:
        _wait_for_shards(stage_dir, shards, worker, on_progress, log)
    records = read_records(stage_dir)
    summary = {
        "n": len(records),
        "tokens": sum(r.get("n_tokens", 0) for r in records),
        "seconds": round(sum(_shard_seconds(f) for f in stage_dir.glob("shard_*.parquet")), 3),
        "hash": content_hash(records),
    }
    return summary


def _ids_hash(requests: list[ChatRequest]) -> str:
    return hashlib.sha256("\n".join(r.id for r in requests).encode()).hexdigest()[:16]


def _check_plan(stage_dir: Path, plan: dict[str, Any], log: Log | None) -> None:
    """Save the shard plan; a different saved plan is refused, a damaged one rewritten.

    A damaged plan is safe to rewrite: each shard records the hash of its request ids,
    and `_shard_ok` redoes a shard that does not hold the requests the new plan gives it.
    """
    path = stage_dir / PLAN
    if path.is_file():
        try:
            old = load_json(path)
        except DamagedFileError as err:
            _warn(log, f"{err.path} is damaged; rewriting it")
            old = plan
        if old != plan:
            raise RunDirError(f"{stage_dir} holds shards of a different request plan; delete it to start over")
    write_json_atomic(path, plan)


def _shard_ok(path: Path, shard: list[ChatRequest], log: Log | None) -> bool:
    """Whether a shard on disk holds exactly its planned requests; a bad one is logged for redoing."""
    try:
        table = read_table(path)
        ids = (table.schema.metadata or {}).get(b"lidr_ids")
        if table.num_rows != len(shard):
            why = f"{table.num_rows} rows, its plan has {len(shard)}"
        elif ids is not None and ids.decode() != _ids_hash(shard):
            why = "it holds other requests than its plan"
        else:
            return True
    except DamagedFileError as err:
        why = err.why
    _warn(log, f"{path} is damaged ({why}); redoing it")
    return False


def _wait_for_shards(stage_dir: Path, shards: list, worker: Worker, on_progress, log) -> None:
    others = {k: stage_dir / f"shard_{k:05d}.parquet" for k in range(len(shards)) if not worker.owns(k)}

    def missing() -> list[int]:
        return [k for k, p in others.items() if not p.is_file()]

    wait_until(lambda: not missing(), lambda: f"{stage_dir.name} shards {missing()[:8]} "
               f"(workers {sorted({k % worker.count for k in missing()})})", log)
    if on_progress:
        for k in others:
            on_progress(len(shards[k]), 0)
