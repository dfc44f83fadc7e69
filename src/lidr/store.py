"""The run directory on disk: atomic writes, parquet shards, stage completion markers, the lock.

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

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


def warn(log: Log | None, message: str) -> None:
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
        warn(log, f"{err.path} is damaged; the stage is checked and redone where needed")
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
        warn(log, f"{problem}; redoing it")
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
        warn(log, f"removed {removed} temp file(s) left by an interrupted run in {run_dir}")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
