"""The iteration loop: which stage runs next, and resume.

    setup    `prepare`: every input the run reads is checked before anything is written
    loop     evaluate M0; per iteration t: generate -> translate -> pairs -> train -> evaluate M(t)
    finish   the report, and the summary of what each stage wrote

The run directory's layout is named in `lidr.rundir`. Every stage follows one protocol: a
stage whose `_done.json` exists (and whose files agree with it) is skipped; a generation or
translation stage that was killed continues from its last written shard; a stage that
finishes writes its `_done.json` last.

Data parallel: N workers (`Worker(i, N)`) run the same config on one run directory. Each
generates and translates its own shards; worker 0 alone builds pairs, trains and
evaluates, while the others wait for the next model and then shard the next iteration.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from lidr import cards, rundir, stopping, tracking
from lidr import reuse as reuse_stages
from lidr.config import ConfigError, RunConfig, to_yaml
from lidr.data.prompts import Prompt, load_aligned, read_records, resolve_path
from lidr.engines import Sampling, check_engine, engine_from_config, pinned
from lidr.evaluate.runner import check_task, evaluate_in_run
from lidr.models import model_ok, resolve_model
from lidr.progress import stage_progress
from lidr.shards import run_sharded, wait_until
from lidr.stages import generate, pairs, retries, train, translate
from lidr.stages.gates import agreement_counts, apply_gates, disagreeing_answers
from lidr.store import DONE, Worker, check_redone, clean_stale_tmp, finished, is_done, load_json, \
    previous_done, read_records as read_stage, run_lock, write_json_atomic, write_parquet_atomic, \
    write_text_atomic
from lidr.summary import run_summary


@dataclass
class IterationPlan:
    t: int
    prompts: dict[str, list[Prompt]]
    run_dir: Path
    cfg: RunConfig  # the run's config with this iteration's `per_iteration` settings

    def stage_dir(self, stage: str) -> Path:
        return rundir.stage_dir(self.run_dir, self.t, stage)

    @property
    def model_dir(self) -> Path:
        return rundir.model_dir(self.run_dir, self.t)


class Pipeline:
    def __init__(self, cfg: RunConfig, run_dir: Path, base_dir: Path | None, console: Console | None = None,
                 worker: Worker = Worker(), reuse: Path | None = None):
        self.cfg = cfg
        self.reuse = Path(reuse) if reuse else None
        self.reuse_plan: tuple[list[reuse_stages.Copy], str] = ([], "")
        self.worker = worker
        self.run_dir = Path(run_dir)
        self.base_dir = base_dir
        self.console = console or Console(stderr=True)
        self.plans: list[IterationPlan] = []
        self.task_ids: set[str] = set()
        self.translation_examples: list[translate.Example] = []
        # The generation section with `engine: auto` replaced by the run's engine (engines/pinned.py).
        self.gen = cfg.generation
        self.engine_record: dict[str, str] | None = None

    # ---- checks before anything is written -------------------------------------------

    def prepare(self) -> None:
        """Validate everything the run reads; raises a clear error and writes nothing."""
        cfg = self.cfg
        resolve_model(cfg.model, self.base_dir, build_bundled=False)
        check_engine(cfg.generation)
        self.gen, self.engine_record = pinned.pin_engine(cfg.generation, self.run_dir, self.reuse, self.console.log)
        pinned.check_pinned(self.gen, self.run_dir)
        if cfg.training.accelerate_config:
            from lidr.stages.train_launch import accelerate_config_path

            accelerate_config_path(cfg.training.accelerate_config, self.base_dir)
        tracking.check(cfg.training.report_to)
        for t in range(1, cfg.last_iteration + 1):
            prompts = load_aligned(cfg.prompts_for(t), cfg.all_languages, self.base_dir, cfg.limit)
            self.plans.append(IterationPlan(t, prompts, self.run_dir, cfg.at_iteration(t)))
        for plan in self.plans:
            if plan.cfg.training.lora.enabled:  # in any iteration
                train.lora_config(plan.cfg.training)  # PEFT installed?
        for task in cfg.evaluation.tasks:
            check_task(task, cfg.all_languages, self.base_dir, self.gen)
        if cfg.translation.examples:
            self.translation_examples = translate.load_examples(cfg.translation.examples, cfg.all_languages,
                                                                self.base_dir)
        if cfg.pairs.translation_task_ids:
            path = resolve_path(cfg.pairs.translation_task_ids, self.base_dir)
            self.task_ids = {str(rec["id"]) for _, rec in read_records(path) if "id" in rec}
        rundir.check_saved_config(self.run_dir, cfg, self.console.log, self.base_dir)
        if self.reuse:
            if self.worker.count > 1:
                raise ConfigError("--reuse copies another run's stages before any worker starts: run it with one "
                                  "worker, then resume the run with --workers")
            self.reuse_plan = reuse_stages.plan_reuse(self.reuse, cfg, self.run_dir, self.base_dir)

    def describe(self) -> list[str]:
        lines = describe_plan(self.cfg, self.run_dir, self.plans)
        return lines + (reuse_stages.describe_reuse(self.reuse, *self.reuse_plan) if self.reuse else [])

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
        write_text_atomic(rundir.config_path(self.run_dir), to_yaml(self.cfg))
        if self.base_dir is not None:  # what its relative paths meant, for a later --reuse of this run
            write_json_atomic(self.run_dir / rundir.CONFIG_DIR_FILE, {"config_dir": str(Path(self.base_dir).resolve())})
        if self.engine_record is not None and self.worker.is_main:
            pinned.write_record(self.run_dir, self.engine_record)
        if self.reuse:  # after config.yaml: a copy cut short leaves a run that resumes
            reuse_stages.apply_reuse(self.reuse, self.reuse_plan[0], self.run_dir, self.console.log)
        model_in = resolve_model(self.cfg.model, self.base_dir)
        self._evaluate(0, model_in)
        for plan in self.plans:
            self._iteration(plan, model_in)
            self._write_cards(plan)
            model_in = str(plan.model_dir)
            self._evaluate(plan.t, model_in)
            self._write_cards(plan)  # again, with this model's evaluation
            if self._stops_after(plan.t):
                break
        if self.cfg.evaluation.tasks and self.worker.is_main:
            from lidr.report import build_report

            self.console.log(f"report written to {build_report(self.run_dir)}")
        return run_summary(self.run_dir)

    def _evaluate(self, t: int, model_dir: str) -> None:
        """Evaluate M(t) on every configured task not yet done; results in iter_<t>/eval/."""
        out = rundir.eval_dir(self.run_dir, t)
        if not self.worker.is_main:
            return
        for task in self.cfg.evaluation.tasks:  # in order: M0's outputs exist before any baseline reads them
            if (out / f"{task.name}.json").is_file():
                continue
            self.console.log(f"evaluating M{t} on {task.name}")
            t0 = time.perf_counter()
            result = evaluate_in_run(task, t, model_dir, out, rundir.eval_dir(self.run_dir, 0),
                                     self.cfg.all_languages, self.base_dir, self.gen)
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

    def _write_cards(self, plan: IterationPlan) -> None:
        if self.worker.is_main:
            cards.write_iteration_cards(self.run_dir, plan.cfg, plan.t, self.base_dir, log=self.console.log)

    def _iteration(self, plan: IterationPlan, model_in: str) -> None:
        cfg, t = self.cfg, plan.t
        engine = None

        def engine_factory():
            nonlocal engine
            if engine is None:
                self.console.log(f"iteration {t}: loading {model_in} ({self.gen.engine} engine, {self.gen.dtype})")
                engine = engine_from_config(self.gen, model_in, seed=cfg.seed + t, log=self.console.log)
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
        cfg, g = self.cfg, self.cfg.generation
        self._sharded_stage(
            plan.stage_dir("responses"), f"iter {plan.t} generate",
            lambda: generate.generation_requests(plan.prompts, g.max_new_tokens, g.task_template, g.samples,
                                                 g.sample_temperature),
            engine_factory, Sampling(g.temperature, g.top_p, g.repetition_penalty, cfg.seed + plan.t),
            generate.response_record, lambda rows: {"languages": generate.response_stats(rows)})

    def _task_ids(self, plan: IterationPlan, responses: list[dict[str, Any]]) -> set[str]:
        p = plan.cfg.pairs
        return pairs.translation_task_ids(responses, self.task_ids, p.detect_translation_tasks)

    def _math_ids(self, plan: IterationPlan) -> frozenset[str]:
        """The word problems (their source's `task: math`): the math gates check these only."""
        return frozenset(p.id for p in plan.prompts[self.cfg.dominant_language] if p.task == "math")

    def _agreement_drops(self, plan: IterationPlan, responses: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
        """Answers whose pairs the agreement gate drops in every language, whatever their
        translations: they are not translated, and the pairs stage counts them under the gate."""
        gates = plan.cfg.pairs.gates
        if not (gates.enabled and gates.agreement):
            return {}
        answers = disagreeing_answers(responses, self.cfg.dominant_language, self._math_ids(plan), gates.agreement)
        return dict.fromkeys(answers, "agreement")

    def _translate(self, plan: IterationPlan, engine_factory: Callable) -> None:
        cfg, tc = plan.cfg, plan.cfg.translation

        def requests() -> list:
            responses = read_stage(plan.stage_dir("responses"))
            gates = cfg.pairs.gates  # they drop a looping translation: no use generating all of it
            return translate.translation_requests(responses, cfg.dominant_language, cfg.languages,
                                                  self._task_ids(plan, responses), tc.length_factor, tc.max_new_tokens,
                                                  stop_on_loop=gates.enabled and gates.degenerate,
                                                  examples=self.translation_examples,
                                                  skip_answers=self._agreement_drops(plan, responses).keys(),
                                                  retries=tc.retries, retry_temperature=tc.retry_temperature)

        self._sharded_stage(
            plan.stage_dir("translations"), f"iter {plan.t} translate", requests, engine_factory,
            Sampling(tc.temperature, tc.top_p, tc.repetition_penalty, cfg.seed + plan.t),
            lambda r, c: translate.translation_record(r, c, tc.accept_unclosed),
            lambda rows: {"directions": translate.translation_stats(rows)})

    def _pairs(self, plan: IterationPlan) -> None:
        cfg, out = plan.cfg, plan.stage_dir("pairs")
        if self._nothing_to_do(out, f"pairs of iteration {plan.t}"):
            return
        t0 = time.perf_counter()
        responses = read_stage(plan.stage_dir("responses"))
        translations = read_stage(plan.stage_dir("translations"))
        rows, stats = pairs.build_pairs(
            responses, translations, cfg.dominant_language, cfg.languages, self._task_ids(plan, responses),
            cfg.pairs.translation_tasks, cfg.pairs.dominant_pairs, skipped=self._agreement_drops(plan, responses))
        gates = cfg.pairs.gates
        task_of = {p.id: p.task for p in plan.prompts[cfg.dominant_language]}
        agreement = agreement_counts(responses, cfg.dominant_language) if gates.agreement else None
        rows, gate_stats = apply_gates(rows, gates, math=self._math_ids(plan), agreement=agreement)
        if cfg.translation.retries:
            rows = self._recover_with_retries(plan, rows, responses, translations, stats, agreement)
        for lang, s in stats.items():  # answers not translated because the agreement gate drops them
            if n := s["dropped"].pop("agreement", 0):
                counts = gate_stats.setdefault(lang, {})
                counts["agreement"] = counts.get("agreement", 0) + n
        if cfg.pairs.max_opening_share is not None:  # before the English cap, which counts xx pairs
            rows, capped = pairs.cap_shared_openings(rows, cfg.dominant_language, cfg.pairs.max_opening_share)
            for lang, n in capped.items():
                gate_stats.setdefault(lang, {})["opening_share"] = n
        if cfg.pairs.dominant_ratio is not None:
            rows, capped = pairs.cap_dominant_pairs(rows, cfg.pairs.dominant_ratio)
            if capped:
                gate_stats.setdefault(cfg.dominant_language, {})["dominant_ratio"] = sum(capped.values())
        if cfg.pairs.language_pairs:
            rows, added = pairs.add_language_pairs(rows, cfg.dominant_language,
                                                   cfg.pairs.language_pairs_min_ratio)
            for lang in cfg.languages:  # 0 too: the report tells "none added" from "option off"
                stats[lang]["language_pairs"] = added[lang]
        if gates.enabled and gates.drop_cut_off and gates.cut_off_native_rejected == "trim":
            rows = pairs.trim_cut_off_rejected(rows)  # last: it changes texts, not which pairs stay
        for lang, dropped in gate_stats.items():
            stats[lang]["gates"] = dropped
        self._count_kept(stats, rows, task_of)
        for r in rows:
            r["iteration"] = plan.t
        if rows:
            write_parquet_atomic(out / rundir.PAIRS_FILE, rows)
        summary = {"n": len(rows), "languages": stats, "gates_enabled": gates.enabled,
                   "seconds": round(time.perf_counter() - t0, 3)}
        write_json_atomic(out / DONE, summary)
        kept = ", ".join(f"{lang} {s['kept']}" for lang, s in stats.items())
        self.console.log(f"iteration {plan.t}: {len(rows)} pairs kept ({kept})")

    def _recover_with_retries(self, plan: IterationPlan, rows: list[dict], responses: list[dict],
                              translations: list[dict], stats: dict[str, dict[str, Any]],
                              agreement: dict | None) -> list[dict]:
        """xx pairs a sampled retry of their translation gives where the first did not
        (`translation.retries`, stages/retries.py); counted per language as `translation_retries`
        (their first translation's drop stays counted under its reason)."""
        cfg = plan.cfg

        def pairs_from(trans: list[dict]) -> list[dict]:
            built, _ = pairs.build_pairs(responses, trans, cfg.dominant_language, cfg.languages,
                                         self._task_ids(plan, responses), cfg.pairs.translation_tasks,
                                         cfg.pairs.dominant_pairs, skipped=self._agreement_drops(plan, responses))
            return apply_gates(built, cfg.pairs.gates, math=self._math_ids(plan), agreement=agreement)[0]

        for r in rows:
            r["translation_retry"] = 0  # every row has the column: parquet takes its schema from the first
        rows, recovered = retries.recover_with_retries(rows, translations, cfg.dominant_language, pairs_from)
        for lang in cfg.languages:  # 0 too: the report tells "none recovered" from "option off"
            stats[lang]["translation_retries"] = recovered[lang]
        return rows

    def _count_kept(self, stats: dict[str, dict[str, Any]], rows: list[dict], task_of: dict[str, str]) -> None:
        """Kept pairs per language; with several answers per prompt, how many the extra answers
        brought; with a mix of prompt kinds (`task_of`: prompt id -> task), how many each gave."""
        kinds = sorted(set(task_of.values()))
        trimmed = any("rejected_trimmed_from" in r for r in rows)  # gates.cut_off_native_rejected: trim
        for lang in stats:
            mine = [r for r in rows if r["language"] == lang]
            stats[lang]["kept"] = len(mine)
            if trimmed and lang != self.cfg.dominant_language:
                stats[lang]["rejected_trimmed"] = sum(r.get("rejected_trimmed_from") is not None for r in mine)
            if self.cfg.max_samples > 1:
                stats[lang]["kept_sampled"] = sum(1 for r in mine if r["sample"])
            if len(kinds) > 1:
                by_task = Counter(task_of[r["prompt_id"]] for r in mine)
                stats[lang]["kept_by_task"] = {k: by_task[k] for k in kinds}

    def _train(self, plan: IterationPlan, model_in: str) -> None:
        out = plan.stage_dir("train")
        if self._nothing_to_do(out, f"training of M{plan.t}", check=lambda: model_ok(plan.model_dir, self.console.log),
                               ready=lambda: (plan.model_dir / "config.json").is_file()):
            return
        pairs_file = plan.stage_dir("pairs") / rundir.PAIRS_FILE
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
        training = plan.cfg.training
        if training.accelerate_config:
            from lidr.stages.train_launch import train_launched

            summary = train_launched(model_in, pairs_file, plan.model_dir, training, out / "work",
                                     log=self.console.log, base_dir=self.base_dir, **track)
        else:
            summary = train.train_dpo(model_in, pairs_file, plan.model_dir, training, out / "work",
                                      log=self.console.log, **track)
        write_json_atomic(out / DONE, summary)
        self.console.log(f"iteration {plan.t}: model saved to {plan.model_dir}")

    # ---- the stage protocol --------------------------------------------------------------

    def _nothing_to_do(self, out: Path, what: str, check: Callable[[], bool] = lambda: True,
                       ready: Callable[[], bool] = lambda: True) -> bool:
        """For a stage worker 0 runs alone: True when this process has nothing to do, because
        the stage is finished (worker 0 checks its files, then `check`) or, on another worker,
        once worker 0 has finished it (`_done.json` written and `ready`)."""
        if self.worker.is_main:
            return finished(out, self.console.log) and check()
        wait_until(lambda: is_done(out) and ready(), lambda: f"worker 0: {what}", self.console.log)
        return True

    def _sharded_stage(self, out: Path, desc: str, requests: Callable[[], list], engine_factory: Callable,
                       sampling: Sampling, to_record: Callable, stats: Callable[[list[dict]], dict]) -> None:
        """A stage every worker shares: its own shards, then (all shards written) `_done.json`."""
        if finished(out, self.console.log):
            return
        old = previous_done(out)
        todo = requests()
        with stage_progress(self.console, desc, len(todo)) as (on_progress, on_shard):
            summary = run_sharded(out, todo, engine_factory, sampling, self.cfg.generation.shard_size, to_record,
                                  on_progress, on_shard, self.worker, self.console.log)
        summary.update(stats(read_stage(out)))
        summary["engine"] = self.gen.engine
        check_redone(out, old, summary)  # a stage redone after damage must give the same rows
        write_json_atomic(out / DONE, summary)


def describe_plan(cfg: RunConfig, run_dir: Path, plans: list[IterationPlan]) -> list[str]:
    """The plan, for --dry-run: stages, prompt counts per language, output paths."""
    lines = [f"run directory: {run_dir}", f"model: {cfg.model}",
             f"languages: {cfg.dominant_language} (dominant), {', '.join(cfg.languages)}"]
    if cfg.iterations == "auto":
        s = cfg.stopping
        lines.append(f"iterations: auto, at most {cfg.max_iterations}; stops when the gain in {s.task} "
                     f"{s.metric} (mean of {', '.join(stopping.rule(cfg)['languages'])}) is below {s.min_gain:g}")
        lines += [f"  or when {g.task} {g.metric} is worse than M0's by more than {g.max_loss:g}" for g in s.guards]
    for p in plans:
        if p.cfg is not cfg:
            changes = cfg.per_iteration[p.t].settings()
            lines.append(f"iteration {p.t} changes: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        counts = ", ".join(f"{lang} {len(v)}" for lang, v in p.prompts.items())
        g = cfg.generation  # answers per language; a source may set its own number of answers
        n = sum(pr.samples or g.samples for pr in p.prompts[cfg.dominant_language])
        n_x = len(cfg.languages)
        per = sorted({pr.samples or g.samples for pr in p.prompts[cfg.dominant_language]})
        each = f" ({' or '.join(map(str, per))} per prompt)" if per != [1] else ""
        tasks = Counter(pr.task for pr in p.prompts[cfg.dominant_language])
        kinds = f" ({', '.join(f'{k} {v}' for k, v in tasks.items())} in each)" if len(tasks) > 1 else ""
        lines.append(f"iteration {p.t}: prompts {counts}{kinds}")
        lines.append(f"  1 generate   {n * (n_x + 1)} responses{each} -> {p.stage_dir('responses')}")
        k = p.cfg.translation.retries
        retried = f", {k} sampled {'retry' if k == 1 else 'retries'} of each into xx" if k else ""
        lines.append(f"  2 translate  up to {(2 + k) * n * n_x} translations{retried} -> "
                     f"{p.stage_dir('translations')}")
        per_xx = 1 + p.cfg.pairs.dominant_pairs + p.cfg.pairs.language_pairs  # pairs per prompt and xx
        lines.append(f"  3 pairs      up to {n * n_x * per_xx} pairs -> "
                     f"{p.stage_dir('pairs')}")
        tc = p.cfg.training
        lines.append(f"  4 train      DPO+NLL beta={tc.beta} alpha={tc.alpha} lr={tc.learning_rate} -> {p.model_dir}")
    return lines


def _metrics_line(result: dict[str, Any]) -> str:
    parts = []
    for lang, m in result.get("languages", {}).items():
        vals = ", ".join(f"{k} {v:.3g}" for k, v in m.items() if k != "n" and isinstance(v, (int, float)))
        parts.append(f"{lang}: {vals}")
    return "; ".join(parts)
