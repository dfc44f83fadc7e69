"""Progress bars for the stages that run a model over many requests (rich)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

OnProgress = Callable[[int, int], None]  # requests finished, tokens generated
OnShard = Callable[[int, int, int, float], None]  # shard index, shard count, tokens, seconds


@contextmanager
def stage_progress(console: Console, desc: str, total: int) -> Iterator[tuple[OnProgress, OnShard]]:
    """A bar with requests done and tokens per second, and a log line per shard written."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(desc, total=total, rate="")
        t0, tokens = time.perf_counter(), 0

        def on_progress(n: int, new_tokens: int) -> None:
            nonlocal tokens
            tokens += new_tokens
            rate = tokens / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=n, rate=f"{rate:.0f} tok/s" if tokens else "")

        def on_shard(k: int, n: int, toks: int, seconds: float) -> None:
            console.log(f"{desc}: shard {k + 1}/{n} written ({toks} tokens, {seconds:.1f} s)")

        yield on_progress, on_shard
