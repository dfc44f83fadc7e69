"""The run directory on disk: atomic writes, parquet shards, stage completion markers.

A stage directory holds `shard_NNNNN.parquet` files and, once complete, `_done.json`.
Every file is written to a temporary name and renamed, so a process killed at any
moment leaves either the old state or the new one, never half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from lidr.engines.base import ChatRequest, Completion, Engine, Sampling

DONE = "_done.json"
PLAN = "_plan.json"


class RunDirError(ValueError):
    pass


def _tmp_name(path: Path) -> Path:
    # Host and pid: workers on several machines may write into one shared run directory.
    return path.with_name(f".{path.name}.tmp.{socket.gethostname()}.{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_parquet_atomic(path: Path, records: list[dict[str, Any]], metadata: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(records)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    tmp = _tmp_name(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_records(stage_dir: Path) -> list[dict[str, Any]]:
    """All rows of a stage's shards (or its single file), in shard order."""
    rows: list[dict[str, Any]] = []
    for f in sorted(stage_dir.glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def is_done(stage_dir: Path) -> bool:
    return (stage_dir / DONE).is_file()


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
    plan = {"n_requests": len(requests), "shard_size": shard_size,
            "ids_hash": hashlib.sha256("\n".join(r.id for r in requests).encode()).hexdigest()[:16]}
    plan_path = stage_dir / PLAN
    if plan_path.is_file() and read_json(plan_path) != plan:
        raise RunDirError(f"{stage_dir} holds shards of a different request plan; delete it to start over")
    write_json_atomic(plan_path, plan)
    engine = None
    for k, shard in enumerate(shards):
        path = stage_dir / f"shard_{k:05d}.parquet"
        if not worker.owns(k):
            continue
        if path.is_file():
            if on_progress:
                on_progress(len(shard), 0)
            continue
        engine = engine or engine_factory()
        t0 = time.perf_counter()
        completions = engine.generate(shard, sampling, on_progress)
        seconds = time.perf_counter() - t0
        records = [to_record(r, c) for r, c in zip(shard, completions)]
        write_parquet_atomic(path, records, {"lidr_seconds": f"{seconds:.3f}"})
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


def _wait_for_shards(stage_dir: Path, shards: list, worker: Worker, on_progress, log) -> None:
    others = {k: stage_dir / f"shard_{k:05d}.parquet" for k in range(len(shards)) if not worker.owns(k)}

    def missing() -> list[int]:
        return [k for k, p in others.items() if not p.is_file()]

    wait_until(lambda: not missing(), lambda: f"{stage_dir.name} shards {missing()[:8]} "
               f"(workers {sorted({k % worker.count for k in missing()})})", log)
    if on_progress:
        for k in others:
            on_progress(len(shards[k]), 0)
