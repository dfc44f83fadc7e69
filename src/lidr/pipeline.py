"""The iteration loop: which stage runs next, resume, and the run directory's layout.

    run_dir/config.yaml                 the resolved config (a re-run must match it)
    run_dir/iter_<t>/responses/         shards + _done.json   (stage 1)
    run_dir/iter_<t>/translations/      shards + _done.json   (stage 2)
    run_dir/iter_<t>/pairs/             pairs.parquet + _done.json (stage 3)
    run_dir/iter_<t>/train/_done.json   training summary      (stage 4)
    run_dir/iter_<t>/model/             M(t), a plain model directory

A stage whose `_done.json` exists is skipped; a generation or translation stage that
was killed continues from its last written shard. Everything a run needs from the
user (config, model path, prompt files) is checked before anything is written.

Data parallel: N workers (`Worker(i, N)`) run the same config on one run directory. Each
generates and translates its own shards; worker 0 alone builds pairs, trains and
evaluates, while the others wait for the next model and then shard the next iteration.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lidr import cards, stopping, tracking
from lidr.config import RunConfig, diff_configs, to_yaml
from lidr.data.prompts import Prompt, load_aligned, read_records, resolve_path
from lidr.engines import Sampling
from lidr.engines.configured import check_engine, engine_from_config, resolve_engine
from lidr.evaluate.runner import check_task, evaluate_in_run
from lidr.models import model_ok, resolve_model
from lidr.stages import generate, pairs, train, translate
from lidr.stages.gates import apply_gates
from lidr.shards import run_sharded, wait_until
from lidr.store import DONE, RunDirError, Worker, is_done, read_records as read_stage, \
    write_json_atomic, write_parquet_atomic, write_text_atomic
from lidr.store import check_redone, clean_stale_tmp, finished, load_json, previous_done, run_lock

STAGES = ("responses", "translations", "pairs", "train")


@dataclass
class IterationPlan:
    t: int
    prompts: dict[str, list[Prompt]]
    dir: Path

    def stage_dir(self, stage: str) -> Path:
        return self.dir / stage

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"


class Pipeline:
    def __init__(self, cfg: RunConfig, run_dir: Path, base_dir: Path | None, console: Console | None = None,
                 worker: Worker = Worker()):
        self.cfg = cfg
        self.worker = worker
        self.run_dir = Path(run_dir)
        self.base_dir = base_dir
        self.console = console or Console(stderr=True)
        self.plans: list[IterationPlan] = []
        self.task_ids: set[str] = set()

    # ---- checks before anything is written -------------------------------------------

    def prepare(self) -> None:
        """Validate everything the run reads; raises a clear error and writes nothing."""
        cfg = self.cfg
        resolve_model(cfg.model, self.base_dir, build_bundled=False)
        check_engine(cfg.generation)
        if cfg.training.accelerate_config:
            from lidr.stages.train_launch import accelerate_config_path

            accelerate_config_path(cfg.training.accelerate_config, self.base_dir)
        if cfg.training.lora.enabled:
            train.lora_config(cfg.training)  # PEFT installed?
        tracking.check(cfg.training.report_to)
        for t in range(1, cfg.last_iteration + 1):
            prompts = load_aligned(cfg.prompts_for(t), cfg.all_languages, self.base_dir, cfg.limit)
            self.plans.append(IterationPlan(t, prompts, self.run_dir / f"iter_{t}"))
        for task in cfg.evaluation.tasks:
            check_task(task, cfg.all_languages, self.base_dir, cfg.generation)
        if cfg.pairs.translation_task_ids:
            path = resolve_path(cfg.pairs.translation_task_ids, self.base_dir)
            self.task_ids = {str(rec["id"]) for _, rec in read_records(path) if "id" in rec}
        self._check_run_dir()

    def _check_run_dir(self) -> None:
        saved = self.run_dir / "config.yaml"
        if not saved.is_file():
            # Hidden names are other workers' files being written (config.yaml first of all).
            if self.run_dir.exists() and any(not p.name.startswith(".") for p in self.run_dir.iterdir()):
                raise RunDirError(f"{self.run_dir} is not empty and holds no lidr run (no config.yaml)")
            return
        old = self._saved_config(saved)
        if old is None:
            return
        new = self.cfg.model_dump(mode="json")
        differ = diff_configs(old, new)
        if differ:
            raise RunDirError(
                f"{self.run_dir} holds a run with a different config; keys that differ: {', '.join(differ)} "
                "(use another --output, or the same config to resume)"
            )

    def _saved_config(self, saved: Path) -> dict[str, Any] | None:
        """The saved config as a mapping; None when it is a cut copy of this very config.

        config.yaml is always written as `to_yaml(cfg)`, so a file cut short (full disk, a
        copy interrupted) that is a prefix of this config's text can only come from this
        config: the run resumes and rewrites it. Anything else that does not parse is
        refused, since the settings that built the run's files can no longer be checked.
        """
        raw = saved.read_bytes()
        if raw and to_yaml(self.cfg).encode().startswith(raw) and len(raw) < len(to_yaml(self.cfg).encode()):
            self.console.log(f"[yellow]warning:[/yellow] {saved} is cut short; this config matches what is "
                             "left of it and rewrites it")
            return None
        try:
            old = yaml.safe_load(raw.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise RunDirError(f"{saved} is damaged (not valid YAML{where}); restore it, or use another --output "
                              "to start a new run") from None
        if not isinstance(old, dict):
            what = "empty" if old is None else f"a YAML {type(old).__name__}, not a mapping"
            raise RunDirError(f"{saved} is damaged ({what}); restore it, or use another --output to start a new run")
        return old

    def describe(self) -> list[str]:
        """The plan, for --dry-run: stages, prompt counts per language, output paths."""
        cfg = self.cfg
        lines = [f"run directory: {self.run_dir}", f"model: {cfg.model}",
                 f"languages: {cfg.dominant_language} (dominant), {', '.join(cfg.languages)}"]
        if cfg.iterations == "auto":
            s = cfg.stopping
            lines.append(f"iterations: auto, at most {cfg.max_iterations}; stops when the gain in {s.task} "
                         f"{s.metric} (mean of {', '.join(stopping.rule(cfg)['languages'])}) is below {s.min_gain:g}")
        for p in self.plans:
            counts = ", ".join(f"{lang} {len(v)}" for lang, v in p.prompts.items())
            n = len(p.prompts[cfg.dominant_language])
            n_x = len(cfg.languages)
            lines.append(f"iteration {p.t}: prompts {counts}")
            lines.append(f"  1 generate   {n * (n_x + 1)} responses      -> {p.stage_dir('responses')}")
            lines.append(f"  2 translate  up to {2 * n * n_x} translations -> {p.stage_dir('translations')}")
            lines.append(f"  3 pairs      up to {n * n_x * (2 if cfg.pairs.dominant_pairs else 1)} pairs -> "
                         f"{p.stage_dir('pairs')}")
            lines.append(f"  4 train      DPO+NLL beta={cfg.training.beta} alpha={cfg.training.alpha} "
                         f"lr={cfg.training.learning_rate} -> {p.model_dir}")
        return lines

    # ---- the loop ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        if not self.plans:
            self.prepare()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # One process per run directory and worker index: two would overwrite each other's work.
        with run_lock(self.run_dir, self.worker):
            clean_stale_tmp(self.run_dir, self.console.log)
            return self._run_locked()

    def _run_locked(self) -> dict[str, Any]:
        write_text_atomic(self.run_dir / "config.yaml", to_yaml(self.cfg))
        model_in = resolve_model(self.cfg.model, self.base_dir)
        self._evaluate(0, model_in)
        for plan in self.plans:
            self._iteration(plan, model_in)
            self._write_cards(plan.t)
            model_in = str(plan.model_dir)
            self._evaluate(plan.t, model_in)
            self._write_cards(plan.t)  # again, with this model's evaluation
            if self._stops_after(plan.t):
                break
        if self.cfg.evaluation.tasks and self.worker.is_main:
            from lidr.report import build_report

            self.console.log(f"report written to {build_report(self.run_dir)}")
        return run_summary(self.run_dir)

    def _evaluate(self, t: int, model_dir: str) -> None:
        """Evaluate M(t) on every configured task not yet done; results in iter_<t>/eval/."""
        out = self.run_dir / f"iter_{t}" / "eval"
        if not self.worker.is_main:
            return
        for task in self.cfg.evaluation.tasks:  # in order: M0's outputs exist before any baseline reads them
            if (out / f"{task.name}.json").is_file():
                continue
            self.console.log(f"evaluating M{t} on {task.name}")
            t0 = time.perf_counter()
            result = evaluate_in_run(task, t, model_dir, out, self.run_dir / "iter_0" / "eval",
                                     self.cfg.all_languages, self.base_dir, self.cfg.generation)
            if result is None:  # M0 is this head-to-head's baseline: its outputs are written
                continue
            self.console.log(f"M{t} {task.name}: " + _metrics_line(result) + f" ({time.perf_counter() - t0:.0f} s)")
            self._track_eval(t, result)

    def _stops_after(self, t: int) -> bool:
        """Under `iterations: auto`, whether the gains have saturated after M(t) (lidr/stopping.py)."""
        if self.cfg.iterations != "auto":
            return False
        if self.worker.is_main:
            record = stopping.decide(self.run_dir, self.cfg, t)
            write_json_atomic(self.run_dir / stopping.STOPPING_FILE, record)
            self.console.log("\n".join(stopping.lines(record)))
        else:
            wait_until(lambda: stopping.decided(self.run_dir, t), lambda: f"worker 0: the stopping decision "
                       f"after M{t}", self.console.log)
            record = stopping.read(self.run_dir)
        return record["stopped_after"] is not None and record["stopped_after"] <= t

    def _track_eval(self, t: int, result: dict[str, Any]) -> None:
        try:
            tracking.log_eval(self.cfg.training.report_to, self.run_dir, self.run_dir.name, t, result)
        except Exception as e:  # noqa: BLE001 - a tracker failing must not end a run whose result is saved
            self.console.log(f"tracking: M{t} {result.get('task')} not logged: {type(e).__name__}: {e}")

    def _write_cards(self, t: int) -> None:
        if self.worker.is_main:
            cards.write_iteration_cards(self.run_dir, self.cfg, t, self.base_dir, log=self.console.log)

    def _iteration(self, plan: IterationPlan, model_in: str) -> None:
        cfg, t = self.cfg, plan.t
        engine = None

        def engine_factory():
            nonlocal engine
            if engine is None:
                self.console.log(f"iteration {t}: loading {model_in} ({resolve_engine(cfg.generation.engine)} engine)")
                engine = engine_from_config(cfg.generation, model_in, seed=cfg.seed + t, log=self.console.log)
            return engine

        try:
            self._generate(plan, engine_factory)
            self._translate(plan, engine_factory)
        finally:
            if engine is not None:
                engine.close()
        self._pairs(plan)
        self._train(plan, model_in)

    def _generate(self, plan: IterationPlan, engine_factory: Callable) -> None:
        cfg, out = self.cfg, plan.stage_dir("responses")
        if finished(out, self.console.log):
            return
        old = previous_done(out)
        g = cfg.generation
        requests = generate.generation_requests(plan.prompts, g.max_new_tokens, g.task_template)
        sampling = Sampling(g.temperature, g.top_p, g.repetition_penalty, cfg.seed + plan.t)
        with self._progress(f"iter {plan.t} generate", len(requests)) as (on_progress, on_shard):
            summary = run_sharded(out, requests, engine_factory, sampling, g.shard_size,
                                  generate.response_record, on_progress, on_shard, self.worker, self.console.log)
        summary["languages"] = generate.response_stats(read_stage(out))
        summary["engine"] = resolve_engine(g.engine)
        check_redone(out, old, summary)
        write_json_atomic(out / DONE, summary)

    def _task_ids(self, responses: list[dict[str, Any]]) -> set[str]:
        p = self.cfg.pairs
        return pairs.translation_task_ids(responses, self.task_ids, p.detect_translation_tasks)

    def _translate(self, plan: IterationPlan, engine_factory: Callable) -> None:
        cfg, out = self.cfg, plan.stage_dir("translations")
        if finished(out, self.console.log):
            return
        old = previous_done(out)
        tc = cfg.translation
        responses = read_stage(plan.stage_dir("responses"))
        requests = translate.translation_requests(
            responses, cfg.dominant_language, cfg.languages, self._task_ids(responses),
            tc.length_factor, tc.max_new_tokens)
        sampling = Sampling(tc.temperature, tc.top_p, tc.repetition_penalty, cfg.seed + plan.t)
        with self._progress(f"iter {plan.t} translate", len(requests)) as (on_progress, on_shard):
            summary = run_sharded(out, requests, engine_factory, sampling, cfg.generation.shard_size,
                                  lambda r, c: translate.translation_record(r, c, tc.accept_unclosed),
                                  on_progress, on_shard, self.worker, self.console.log)
        summary["directions"] = translate.translation_stats(read_stage(out))
        summary["engine"] = resolve_engine(cfg.generation.engine)
        check_redone(out, old, summary)
        write_json_atomic(out / DONE, summary)

    def _pairs(self, plan: IterationPlan) -> None:
        cfg, out = self.cfg, plan.stage_dir("pairs")
        if (finished(out, self.console.log) if self.worker.is_main else is_done(out)):
            return
        if not self.worker.is_main:
            return wait_until(lambda: is_done(out), lambda: f"worker 0: pairs of iteration {plan.t}", self.console.log)
        t0 = time.perf_counter()
        responses = read_stage(plan.stage_dir("responses"))
        translations = read_stage(plan.stage_dir("translations"))
        rows, stats = pairs.build_pairs(
            responses, translations, cfg.dominant_language, cfg.languages, self._task_ids(responses),
            cfg.pairs.translation_tasks, cfg.pairs.dominant_pairs)
        gates = cfg.pairs.gates
        # The answer_consistency gate is for math prompts only (a block's `task: math`).
        rows, gate_stats = apply_gates(rows, gates, math=cfg.prompts_for(plan.t).task == "math")
        for lang, dropped in gate_stats.items():
            stats[lang]["kept"] = sum(1 for r in rows if r["language"] == lang)
            stats[lang]["gates"] = dropped
        for r in rows:
            r["iteration"] = plan.t
        if rows:
            write_parquet_atomic(out / "pairs.parquet", rows)
        summary = {"n": len(rows), "languages": stats, "gates_enabled": gates.enabled,
                   "seconds": round(time.perf_counter() - t0, 3)}
        write_json_atomic(out / DONE, summary)
        kept = ", ".join(f"{lang} {s['kept']}" for lang, s in stats.items())
        self.console.log(f"iteration {plan.t}: {len(rows)} pairs kept ({kept})")

    def _train(self, plan: IterationPlan, model_in: str) -> None:
        out = plan.stage_dir("train")
        if self.worker.is_main and finished(out, self.console.log) and model_ok(plan.model_dir, self.console.log):
            return
        if not self.worker.is_main and is_done(out) and (plan.model_dir / "config.json").is_file():
            return
        if not self.worker.is_main:
            return wait_until(lambda: is_done(out) and (plan.model_dir / "config.json").is_file(),
                              lambda: f"worker 0: training of M{plan.t}", self.console.log)
        pairs_file = plan.stage_dir("pairs") / "pairs.parquet"
        if not pairs_file.is_file():
            self.console.log(f"iteration {plan.t}: no pairs, the next model is the current one")
            train.copy_model(model_in, plan.model_dir)
            write_json_atomic(out / DONE, {"pairs": 0, "steps": 0, "seconds": 0.0, "history": []})
            return
        n = load_json(plan.stage_dir("pairs") / DONE)["n"]
        self.console.log(f"iteration {plan.t}: training on {n} pairs (DPO+NLL)")
        tracking.clear_train_logs(self.run_dir, plan.t)
        track = {"log_dir": tracking.train_log_dir(self.run_dir, plan.t),
                 "run_name": f"{self.run_dir.name}-iter{plan.t}"}
        if self.cfg.training.accelerate_config:
            from lidr.stages.train_launch import train_launched

            summary = train_launched(model_in, pairs_file, plan.model_dir, self.cfg.training, out / "work",
                                     log=self.console.log, base_dir=self.base_dir, **track)
        else:
            summary = train.train_dpo(model_in, pairs_file, plan.model_dir, self.cfg.training, out / "work",
                                      log=self.console.log, **track)
        write_json_atomic(out / DONE, summary)
        self.console.log(f"iteration {plan.t}: model saved to {plan.model_dir}")

    @contextmanager
    def _progress(self, desc: str, total: int):
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(desc, total=total, rate="")
            t0, tokens = time.perf_counter(), 0

            def on_progress(n: int, new_tokens: int) -> None:
                nonlocal tokens
                tokens += new_tokens
                rate = tokens / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=n, rate=f"{rate:.0f} tok/s" if tokens else "")

            def on_shard(k: int, n: int, toks: int, seconds: float) -> None:
                self.console.log(f"{desc}: shard {k + 1}/{n} written ({toks} tokens, {seconds:.1f} s)")

            yield on_progress, on_shard


def _metrics_line(result: dict[str, Any]) -> str:
    parts = []
    for lang, m in result.get("languages", {}).items():
        vals = ", ".join(f"{k} {v:.3g}" for k, v in m.items() if k != "n" and isinstance(v, (int, float)))
        parts.append(f"{lang}: {vals}")
    return "; ".join(parts)


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Every finished stage's `_done.json` and evaluation result, by iteration."""
    out: dict[str, Any] = {}
    for it in sorted(Path(run_dir).glob("iter_*"), key=lambda p: int(p.name.split("_")[1])):
        record = {s: load_json(it / s / DONE) for s in STAGES if (it / s / DONE).is_file()}
        results = (load_json(f) for f in sorted((it / "eval").glob("*.json")))
        evals = {r["task"]: r for r in results if isinstance(r, dict) and "task" in r and "languages" in r}
        if evals:
            record["eval"] = evals
        out[it.name] = record
    if (record := stopping.read(run_dir)) is not None:
        out["stopping"] = record  # iterations: auto: the gains so far and why the run stopped
    return out
