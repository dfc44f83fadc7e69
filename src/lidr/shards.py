"""Stages that run an engine over many requests, in shards on disk that a killed run resumes.

A stage directory holds `shard_NNNNN.parquet` files, a `_plan.json` fixing which request
goes in which shard, and (written by the caller) `_done.json`. Data parallel: each
`Worker` runs the shards it owns and then waits for the others' (see `lidr.store.Worker`).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq

from lidr.engines.base import ChatRequest, Completion, Engine, Sampling
from lidr.store import PLAN, DamagedFileError, Log, RunDirError, Worker, content_hash, load_json, read_records, \
    read_table, warn, write_json_atomic, write_parquet_atomic


def _shard_seconds(path: Path) -> float:
    meta = pq.read_schema(path).metadata or {}
    return float(meta.get(b"lidr_seconds", 0.0))


ToRecord = Callable[[ChatRequest, Completion], dict[str, Any]]
OnShard = Callable[[int, int, int, float], None]  # shard index, shard count, tokens, seconds
WAIT_POLL_S = 2.0
WAIT_LOG_S = 60.0


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
            warn(log, f"{err.path} is damaged; rewriting it")
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
    warn(log, f"{path} is damaged ({why}); redoing it")
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
