"""Draw aligned arithmetic problems and write them as `<split>/<lang>.jsonl`.

A problem is drawn once, language-independently (template, numbers, people, object), then
worded in every language: the same id carries the same numbers and the same people
(localised names of one gender) everywhere. Randomness comes only from string seeds
(`seed:split:template`), so the output is byte-identical on any machine and Python.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lidr.data.arith.spec import (
    ARITH_DIR, OBJECT_SLOT, PERSON_SLOTS, PLACEHOLDER, TEMPLATES_DIR, ArithError, Language, Spec,
    Template, available_languages, evaluate, fill, load_language, load_spec,
)
from lidr.store import write_text_atomic

DEFAULT_SEED = 0
_MAX_TRIES = 10_000


@dataclass(frozen=True)
class Problem:
    template: Template
    values: dict[str, int]  # every drawn and derived number
    slots: dict[str, str]  # slot -> person id or object id
    answer: int

    @property
    def key(self) -> tuple:
        return self.template.id, tuple(sorted(self.values.items())), tuple(sorted(self.slots.items()))


def _values(tpl: Template, combo: tuple[int, ...]) -> dict[str, int] | None:
    """All numbers of a problem from its drawn ones, or None when they break a rule."""
    values = dict(zip(tpl.draw, combo))
    for var, expr in tpl.let.items():
        value = evaluate(expr, values)
        if value.denominator != 1:
            return None
        values[var] = int(value)
    if not all(evaluate(cond, values) for cond in tpl.require):
        return None
    answer = evaluate(tpl.answer, values)
    if answer.denominator != 1 or answer <= 0:  # exact division, and something left to count
        return None
    return values


def number_cycle(tpl: Template, seed: int) -> Iterator[dict[str, int]]:
    """Every valid choice of numbers, shuffled, then again: the blocks that share a template
    (train_1, train_2) get different numbers until its ranges run out."""
    ranges = [range(lo, hi + 1) for lo, hi in tpl.draw.values()]
    valid = [v for v in (_values(tpl, combo) for combo in itertools.product(*ranges)) if v is not None]
    if not valid:
        raise ArithError(f"spec.yaml: templates.{tpl.id}: no numbers in its draw ranges satisfy its rules")
    random.Random(f"{seed}:{tpl.id}").shuffle(valid)
    return itertools.cycle(valid)


def draw_problems(tpl: Template, n: int, spec: Spec, numbers: Iterator[dict[str, int]],
                  rng: random.Random, seen: set) -> list[Problem]:
    """n problems of one template, none equal to one already in `seen` (shared by all splits)."""
    out = []
    for values in itertools.islice(numbers, n):
        for _ in range(_MAX_TRIES):
            people = rng.sample(sorted(spec.persons), len(PERSON_SLOTS))
            slots = {s: pid for s, pid in zip(PERSON_SLOTS, people) if s in tpl.slots}
            if OBJECT_SLOT in tpl.slots:
                slots[OBJECT_SLOT] = rng.choice(spec.objects)
            problem = Problem(tpl, values, slots, int(evaluate(tpl.answer, values)))
            if problem.key not in seen:
                break
        else:
            raise ArithError(f"spec.yaml: templates.{tpl.id}: cannot draw {n} distinct problems; widen its ranges")
        seen.add(problem.key)
        out.append(problem)
    return out


def render(problem: Problem, lang: Language, spec: Spec) -> str:
    """The problem's question in one language."""
    return PLACEHOLDER.sub(lambda m: fill(m, lang, spec, problem.values, problem.slots),
                           lang.templates[problem.template.id])


def build_split(split: str, spec: Spec, seed: int, cycles: dict[str, Iterator], seen: set) -> list[Problem]:
    """A split's problems in their final (shuffled) order; templates share the size evenly."""
    group, size = spec.splits[split]
    templates = [t for t in spec.templates.values() if t.group == group]
    problems = []
    for i, tpl in enumerate(templates):
        n = size // len(templates) + (i < size % len(templates))
        rng = random.Random(f"{seed}:{split}:{tpl.id}")
        problems += draw_problems(tpl, n, spec, cycles[tpl.id], rng, seen)
    random.Random(f"{seed}:{split}").shuffle(problems)
    return problems


def record(pid: str, problem: Problem, lang: Language, spec: Spec) -> dict[str, Any]:
    """One jsonl row. `question` and `answer` are what evaluation reads; the rest lets a reader
    (and the tests) recompute the answer and check the alignment."""
    return {
        "id": pid, "question": render(problem, lang, spec), "answer": str(problem.answer),
        "template": problem.template.id,
        "numbers": {v: problem.values[v] for v in problem.template.shown},
        "slots": problem.slots,
    }


def generate(out_dir: Path = ARITH_DIR, seed: int = DEFAULT_SEED, languages: list[str] | None = None,
             templates_dir: Path = TEMPLATES_DIR) -> dict[str, int]:
    """Write every split for every language; returns problems per split (per language).

    Everything is rendered before anything is written, so a bad language file leaves the
    existing splits untouched."""
    spec = load_spec()
    langs = [load_language(c, spec, templates_dir) for c in (languages or available_languages(templates_dir))]
    cycles = {tid: number_cycle(tpl, seed) for tid, tpl in spec.templates.items()}
    seen: set = set()
    files, sizes = {}, {}
    for split in spec.splits:
        problems = build_split(split, spec, seed, cycles, seen)
        sizes[split] = len(problems)
        for lang in langs:
            rows = (record(f"{split}-{i:04d}", p, lang, spec) for i, p in enumerate(problems, 1))
            files[Path(out_dir) / split / f"{lang.code}.jsonl"] = "".join(
                json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    for path, text in files.items():
        write_text_atomic(path, text)
    return sizes
