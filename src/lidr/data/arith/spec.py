"""Loading and checking the arith family's data: spec.yaml and templates/<lang>.yaml.

Everything is checked when loaded, so a typo in a language file is a one-line error that
names the file and key, never a half-written split or a question with a hole in it.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from lidr.data.prompts import DataError

ARITH_DIR = Path(__file__).parent
SPEC_PATH = ARITH_DIR / "spec.yaml"
TEMPLATES_DIR = ARITH_DIR / "templates"
PERSON_SLOTS = ("p", "q")
OBJECT_SLOT = "obj"
# {a} a number or a slot; {obj.sg}, {p.dat} a form of the object or name; {He@p} a word in the
# slot's gender; {obj#a}, {year#a} the form that agrees with the number a (plural categories
# come from the language file); {obj.acc#a} the same in a case (acc_one, falling back to one).
PLACEHOLDER = re.compile(r"\{(\w+)(?:\.(\w+))?(?:@(\w+))?(?:#(\w+))?\}")
# Numbers that meet every plural category of the languages we know (1, 2-4, 5-20, 21, 101, ...).
_PROBE_NUMBERS = (1, 2, 5, 11, 12, 21, 22, 25, 101, 111)

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Mod: operator.mod}
_CMP = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}


class ArithError(DataError):
    """A bad spec or language file, with a message naming the file and key."""


@dataclass(frozen=True)
class Template:
    id: str
    group: str
    slots: tuple[str, ...]
    draw: dict[str, tuple[int, int]]
    let: dict[str, str]
    require: tuple[str, ...]
    answer: str

    @property
    def shown(self) -> list[str]:
        """The numbers the answer is computed from, in draw/let order: the record's `numbers`."""
        used = {n.id for n in ast.walk(ast.parse(self.answer, mode="eval")) if isinstance(n, ast.Name)}
        return [v for v in [*self.draw, *self.let] if v in used]


@dataclass(frozen=True)
class Spec:
    persons: dict[str, str]  # id -> gender
    objects: list[str]
    splits: dict[str, tuple[str, int]]  # split -> (template group, size)
    templates: dict[str, Template]


@dataclass(frozen=True)
class Language:
    code: str
    names: dict[str, dict[str, str]]  # id -> forms: nom, and cases where the language needs them
    objects: dict[str, dict[str, str]]  # id -> forms (sg, pl, ...) and gender
    words: dict[str, dict[str, str]]  # word -> gender or plural category -> form
    templates: dict[str, str]
    plural: dict[str, str]  # category -> condition on n ("else" for the last), in order

    def category(self, n: int) -> str:
        """The plural category of a number (CLDR-style, from the language file)."""
        for cat, cond in self.plural.items():
            if cond == "else" or evaluate(cond, {"n": n}):
                return cat
        raise KeyError(f"plural category of {n}")


def form_of(forms: dict[str, str], key: str) -> str:
    """forms[key]; a case-marked key falls back to its plain form (acc_one -> one, acc_sg -> sg)."""
    if key in forms:
        return forms[key]
    return forms[key.split("_", 1)[-1]]


def fill(m: re.Match, lang: Language, spec: Spec, values: dict[str, int], slots: dict[str, str]) -> str:
    """The text of one placeholder for a problem's numbers and slots (KeyError: no such wording)."""
    name, form, agree, count = m.groups()
    if count is not None:
        forms = lang.objects[slots[name]] if name == OBJECT_SLOT else lang.words[name]
        cat = lang.category(values[count])
        return form_of(forms, f"{form}_{cat}" if form else cat)
    if agree is not None:
        ref = slots[agree]
        gender = spec.persons[ref] if agree in PERSON_SLOTS else lang.objects[ref]["gender"]
        return lang.words[name][gender]
    if name == OBJECT_SLOT:
        return form_of(lang.objects[slots[name]], form or "pl")
    if name in PERSON_SLOTS:
        return form_of(lang.names[slots[name]], form or "nom")
    return str(values[name])


def evaluate(expr: str, env: dict[str, int]) -> Fraction | bool:
    """An arithmetic expression (+ - * /, comparisons) over integers, exactly: 7 / 2 stays 7/2."""

    def ev(node: ast.AST):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.Name) and node.id in env:
            return Fraction(env[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
            return _CMP[type(node.ops[0])](ev(node.left), ev(node.comparators[0]))
        if isinstance(node, ast.BoolOp):  # plural rules: n % 10 == 1 and n % 100 != 11
            results = [ev(v) for v in node.values]
            return all(results) if isinstance(node.op, ast.And) else any(results)
        raise ValueError(f"unsupported element {ast.dump(node)[:40]}")

    return ev(ast.parse(expr, mode="eval"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArithError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ArithError(f"{path}: malformed YAML ({err})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ArithError(f"{path}: expected a mapping at the top level")
    return data


def _mapping(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict) or not value:
        raise ArithError(f"{where}: {key!r} must be a non-empty mapping")
    return value


def _template(tid: str, raw: Any, groups: set[str], where: str) -> Template:
    where = f"{where}: templates.{tid}"
    if not isinstance(raw, dict):
        raise ArithError(f"{where}: expected a mapping")
    slots = tuple(raw.get("slots", ()))
    bad = [s for s in slots if s not in (*PERSON_SLOTS, OBJECT_SLOT)]
    if bad:
        raise ArithError(f"{where}.slots: unknown slot {bad[0]!r} (use p, q, obj)")
    draw = {}
    for var, bounds in _mapping(raw, "draw", where).items():
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(type(b) is int for b in bounds)
                and 0 < bounds[0] <= bounds[1]):
            raise ArithError(f"{where}.draw.{var}: expected [low, high], positive integers, got {bounds!r}")
        draw[var] = (bounds[0], bounds[1])
    tpl = Template(tid, raw.get("group"), slots, draw, dict(raw.get("let") or {}),
                   tuple(raw.get("require") or ()), str(raw.get("answer", "")))
    if tpl.group not in groups:
        raise ArithError(f"{where}.group: {tpl.group!r} feeds no split (groups: {', '.join(sorted(groups))})")
    # Evaluate everything once at the lowest draws: a typo fails here, not mid-generation.
    env = {v: lo for v, (lo, _) in draw.items()}
    checks = [*((f"let.{v}", e) for v, e in tpl.let.items()), *(("require", e) for e in tpl.require),
              ("answer", tpl.answer)]
    for key, expr in checks:
        try:
            value = evaluate(str(expr), env)
        except (ValueError, SyntaxError, ZeroDivisionError) as err:
            raise ArithError(f"{where}.{key}: cannot evaluate {expr!r} ({err})") from None
        if key.startswith("let."):
            env[key[4:]] = value
    return tpl


def load_spec(path: Path = SPEC_PATH) -> Spec:
    data = _read_yaml(path)
    persons = {str(k): v for k, v in _mapping(data, "persons", str(path)).items()}
    for pid, gender in persons.items():
        if gender not in ("m", "f"):
            raise ArithError(f"{path}: persons.{pid}: gender must be m or f, got {gender!r}")
    objects = data.get("objects")
    if not isinstance(objects, list) or not objects:
        raise ArithError(f"{path}: 'objects' must be a non-empty list")
    splits = {}
    for name, raw in _mapping(data, "splits", str(path)).items():
        if not isinstance(raw, dict) or type(raw.get("size")) is not int or raw["size"] < 1:
            raise ArithError(f"{path}: splits.{name}: expected {{group: ..., size: N}} with N >= 1")
        splits[name] = (raw.get("group"), raw["size"])
    groups = {g for g, _ in splits.values()}
    templates = {tid: _template(tid, raw, groups, str(path))
                 for tid, raw in _mapping(data, "templates", str(path)).items()}
    return Spec(persons, [str(o) for o in objects], splits, templates)


def _check_placeholders(text: str, tpl: Template, where: str) -> None:
    """Every placeholder names a number or slot of this template; the numbers shown are exactly
    those the answer is computed from."""
    numbers = {*tpl.draw, *tpl.let}
    shown = set()
    for m in PLACEHOLDER.finditer(text):
        name, form, agree, count = m.groups()
        if agree is not None and agree not in tpl.slots:
            raise ArithError(f"{where}: {m[0]} agrees with {agree!r}, not a slot of this template {tpl.slots}")
        if count is not None and count not in numbers:
            raise ArithError(f"{where}: {m[0]} counts {count!r}, not a number of this template")
        if agree is None and count is None and form is None and name in numbers:
            shown.add(name)
        elif agree is None and count is None and name not in tpl.slots:
            raise ArithError(f"{where}: {m[0]} is neither a number nor a slot of this template")
    if shown != set(tpl.shown):
        raise ArithError(f"{where}: shows the numbers {sorted(shown)}, the answer uses {tpl.shown}")
    if "{" in PLACEHOLDER.sub("", text) or "}" in PLACEHOLDER.sub("", text):
        raise ArithError(f"{where}: a brace that is not a placeholder")


def _probe(text: str, tpl: Template, lang: Language, spec: Spec, where: str) -> None:
    """Render with every person and every object, and numbers of every plural category, so a
    missing name form, gender or count form fails here rather than in some later draw."""
    persons = sorted(spec.persons)
    cases = [(persons[i], persons[(i + 1) % len(persons)], spec.objects[i % len(spec.objects)])
             for i in range(max(len(persons), len(spec.objects)))]
    numbers = _PROBE_NUMBERS if lang.plural else _PROBE_NUMBERS[:1]
    for p, q, obj in cases:
        for n in numbers:
            values = {v: n for v in (*tpl.draw, *tpl.let)}
            for m in PLACEHOLDER.finditer(text):
                try:
                    fill(m, lang, spec, values, {"p": p, "q": q, "obj": obj})
                except KeyError as err:
                    raise ArithError(f"{where}: {m[0]} has no wording for p={p}, obj={obj}, n={n} "
                                     f"(missing {err})") from None


def load_language(code: str, spec: Spec, templates_dir: Path = TEMPLATES_DIR) -> Language:
    """One language's wording, checked against the spec: every id localised, every placeholder known."""
    path = templates_dir / f"{code}.yaml"
    data = _read_yaml(path)
    sections = {key: {str(k): v for k, v in _mapping(data, key, str(path)).items()}
                for key in ("names", "objects", "words", "templates")}
    sections["names"] = {k: v if isinstance(v, dict) else {"nom": v} for k, v in sections["names"].items()}
    lang = Language(code, **sections, plural={str(k): str(v) for k, v in (data.get("plural") or {}).items()})
    for key, wanted in (("names", spec.persons), ("objects", spec.objects), ("templates", spec.templates)):
        missing = [i for i in wanted if i not in sections[key]]
        if missing:
            raise ArithError(f"{path}: {key} lacks {missing[:3]} (every id of spec.yaml needs a wording)")
    for oid in spec.objects:
        if not isinstance(lang.objects[oid], dict) or "pl" not in lang.objects[oid]:
            raise ArithError(f"{path}: objects.{oid}: expected a mapping with at least 'pl'")
    for tid, tpl in spec.templates.items():
        _check_placeholders(str(lang.templates[tid]), tpl, f"{path}: templates.{tid}")
        _probe(str(lang.templates[tid]), tpl, lang, spec, f"{path}: templates.{tid}")
    return lang


def available_languages(templates_dir: Path = TEMPLATES_DIR) -> list[str]:
    """Language codes with a template file, English first (the dominant language)."""
    codes = sorted(p.stem for p in templates_dir.glob("*.yaml"))
    return sorted(codes, key=lambda c: c != "en")
