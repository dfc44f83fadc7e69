"""Bad input: a clear one-line error, a non-zero exit, and an existing run directory unchanged."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from helpers import write_config, write_prompt_set
from lidr.cli import app

runner = CliRunner()


def snapshot(folder):
    """Every file under a folder with a hash of its bytes and its mtime."""
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            out[str(f.relative_to(folder))] = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    """A real finished 1-iteration run on the tiny model, and the config that made it."""
    root = tmp_path_factory.mktemp("bad-input")
    shutil.copytree(tiny_model_dir, root / "model")  # damaged copies of it are made from here
    prompts = write_prompt_set(root / "prompts", n=2)
    cfg = write_config(root / "good.yaml", tiny_model_dir, prompts, iterations=1)
    result = runner.invoke(app, ["run", str(cfg), "--output", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root, cfg


def edit(cfg_path, target, change):
    data = yaml.safe_load(cfg_path.read_text())
    change(data)
    target.write_text(yaml.safe_dump(data, allow_unicode=True))
    return target


def corrupt_line(root):
    bad = root / "bad_prompts"
    shutil.copytree(root / "prompts", bad, dirs_exist_ok=True)
    lines = (bad / "es.jsonl").read_text().splitlines()
    lines[1] = lines[1][:-5]  # cut the closing of the second record
    (bad / "es.jsonl").write_text("\n".join(lines) + "\n")
    return bad


def misalign(root):
    bad = root / "misaligned"
    shutil.copytree(root / "prompts", bad, dirs_exist_ok=True)
    (bad / "fr.jsonl").write_text((bad / "fr.jsonl").read_text().replace('"p1"', '"q1"'))
    return bad


def variant(root, name, lang, change, ext="jsonl"):
    """A copy of the good prompt set (as `ext` files) whose `lang` file's bytes are changed."""
    folder = root / name
    if ext == "jsonl":
        shutil.copytree(root / "prompts", folder, dirs_exist_ok=True)
    else:
        folder.mkdir(exist_ok=True)
        for src in (root / "prompts").glob("*.jsonl"):
            rows = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines()]
            write_rows(folder / f"{src.stem}.{ext}", rows)
    target = folder / f"{lang}.{ext}"
    target.write_bytes(change(target.read_bytes()))
    return str(folder / f"{{lang}}.{ext}")


def write_rows(path, rows):
    if path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")


def bad_model(root, name, damage):
    """A copy of the tiny model whose weights are damaged by `damage(weights_path)`."""
    model = root / name
    shutil.copytree(root / "model", model, dirs_exist_ok=True)
    damage(model / "model.safetensors")
    return str(model)


def cut_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garble_header(path):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    path.write_bytes(data[:8] + b"#" * n + data[8 + n :])


def lines(change_line, index):
    """Change one line (0-based) of a JSONL file's bytes."""
    def change(data):
        rows = data.split(b"\n")
        rows[index] = change_line(rows[index])
        return b"\n".join(rows)
    return change


def prompts(path):
    return lambda d, r: d.update(prompts=[{"path": path}])


# name -> (change to the good config's data, or raw bytes of a config; extra CLI arguments; message part)
CASES = {
    "missing prompt file": (lambda d, r: d.update(prompts=[{"path": str(r / "nowhere" / "{lang}.jsonl")}]),
                            "prompt file not found:"),
    "malformed jsonl line": (lambda d, r: d.update(prompts=[{"path": str(corrupt_line(r) / "{lang}.jsonl")}]),
                             "es.jsonl:2: malformed JSON line"),
    "unknown language": (lambda d, r: d.update(languages=["es", "xx"]), "unknown language code 'xx'"),
    "ids do not align": (lambda d, r: d.update(prompts=[{"path": str(misalign(r) / "{lang}.jsonl")}]),
                         "prompt ids do not align: fr"),
    "model path missing": (lambda d, r: d.update(model=str(r / "no-such-model")), "model path does not exist"),
    "out of range value": (lambda d, r: d["training"].update(beta=-1), "training.beta: Input should be greater than 0"),
    "unknown config key": (lambda d, r: d["training"].update(betta=0.1), "training.betta: unknown key"),
    "different config": (lambda d, r: d["training"].update(learning_rate=1e-3),
                         "keys that differ: training.learning_rate"),
    "non-utf8 jsonl": (lambda d, r: prompts(variant(r, "latin1", "es", lines(lambda b: b.replace(
        b"Tom", "Tôm".encode("latin-1")), 1)))(d, r), "es.jsonl:2: not UTF-8 text (byte 0xf4)"),
    "empty prompt file": (lambda d, r: prompts(variant(r, "empty", "fr", lambda b: b""))(d, r),
                          "fr.jsonl: no prompts for language 'fr'"),
    "jsonl line is a list": (lambda d, r: prompts(variant(r, "listline", "es", lines(lambda b: b"[1, 2]", 0)))(d, r),
                             "es.jsonl:1: expected a JSON object, got list"),
    "duplicate ids": (lambda d, r: prompts(variant(r, "dups", "es", lines(lambda b: b.replace(b'"p1"', b'"p0"'), 1)))(
        d, r), "es.jsonl:2: duplicate id 'p0'"),
    "language listed twice": (lambda d, r: d.update(languages=["es", "es"]), "languages: languages repeat a code"),
    "dominant language listed": (lambda d, r: d.update(languages=["es", "en"]),
                                 "languages lists the dominant language 'en'"),
    "unknown dominant language": (lambda d, r: d.update(dominant_language="zz"),
                                  "dominant_language: unknown language code 'zz'"),
    "yaml syntax error": (b"model: x\nlanguages: [es, fr\niterations: 1\n",
                          "yaml_syntax_error.yaml is not valid YAML at line 3, column 11: expected ',' or ']'"),
    "yaml not a mapping": (b"- model\n- languages\n", "yaml_not_a_mapping.yaml must be a mapping of keys, got list"),
    "config not utf8": ("model: 'caf\xe9'\n".encode("latin-1"), "config_not_utf8.yaml is not UTF-8 text"),
    "limit 0": ((lambda d, r: None, ["--limit", "0"]), "--limit must be at least 1 (got 0)"),
    "model without weights": (lambda d, r: d.update(model=bad_model(r, "noweights", lambda p: p.unlink())),
                              "noweights holds no weights (expected model.safetensors"),
    "model with cut weights": (lambda d, r: d.update(model=bad_model(r, "cutweights", cut_half)),
                               "cutweights/model.safetensors is cut"),
    "model with corrupt weights": (lambda d, r: d.update(model=bad_model(r, "garbled", garble_header)),
                                   "garbled/model.safetensors is not a safetensors file"),
    "model without config.json": (lambda d, r: d.update(model=bad_model(
        r, "noconfig", lambda p: (p.parent / "config.json").unlink())), "noconfig has no config.json"),
    "parquet wrong columns": (lambda d, r: prompts(variant(r, "pq_cols", "es", lambda b: pq_bytes(
        [{"id": "p0", "text": "hola"}]), ext="parquet"))(d, r), "es.parquet row 0: no text key 'instruction'"),
    "not a parquet file": (lambda d, r: prompts(variant(r, "pq_bad", "fr", lambda b: b"id,instruction\n",
                                                        ext="parquet"))(d, r),
                           "fr.parquet: not a readable parquet file"),
    "non-utf8 csv": (lambda d, r: prompts(variant(r, "csv_latin1", "fr", lambda b: b.replace(
        "achète".encode(), "achète".encode("latin-1")), ext="csv"))(d, r), "fr.csv:3: not UTF-8 text (byte 0xe8)"),
    "csv without the text column": (lambda d, r: prompts(variant(r, "csv_cols", "es", lambda b: b.replace(
        b"instruction", b"question", 1), ext="csv"))(d, r), "es.csv row 2: no text key 'instruction'"),
    "json file not a list": (lambda d, r: prompts(variant(r, "json_obj", "en", lambda b: b'{"id": "p0"}',
                                                          ext="json"))(d, r),
                             "en.json: expected a JSON list of objects, got dict"),
    "translation examples lack a language": (lambda d, r: d["translation"].update(examples=examples_file(
        r, {"en": "Two.", "es": "Dos."})), "examples.jsonl:1: translation example has no text for fr"),
    "translation examples missing": (lambda d, r: d["translation"].update(examples=str(r / "no_examples.jsonl")),
                                     "translation.examples: file not found:"),
}


def examples_file(root, example):
    path = root / "examples.jsonl"
    path.write_text(json.dumps(example) + "\n", encoding="utf-8")
    return str(path)


def pq_bytes(rows):
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue().to_pybytes()


def bad_invocation(root, good, case):
    """The config file and extra arguments of one case."""
    spec, _ = CASES[case]
    target = root / f"{case.replace(' ', '_').replace('-', '_')}.yaml"
    if isinstance(spec, bytes):
        target.write_bytes(spec)
        return target, []
    change, extra = spec if isinstance(spec, tuple) else (spec, [])
    return edit(good, target, lambda d: change(d, root)), extra


def test_at_least_twenty_kinds():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_clear_error_and_changes_nothing(finished_run, case):
    root, good = finished_run
    bad, extra = bad_invocation(root, good, case)
    message = CASES[case][1]
    before = snapshot(root / "run")
    result = runner.invoke(app, ["run", str(bad), "--output", str(root / "run"), *extra])
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert err.startswith("error:") and message in err, err
    assert len(err.splitlines()) == 1, err
    assert snapshot(root / "run") == before


def test_dry_run_prints_the_plan_without_loading_a_model(finished_run, tmp_path):
    root, good = finished_run
    result = runner.invoke(app, ["run", str(good), "--dry-run", "--output", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert "iteration 1: prompts en 2, es 2, fr 2" in result.stdout
    assert "1 generate   6 responses" in result.stdout
    assert not (tmp_path / "new").exists()


def test_csv_with_a_byte_order_mark_just_works(finished_run, tmp_path):
    """Spreadsheet exports start with a BOM; the header's first column must still be `id`."""
    root, good = finished_run
    bom = variant(root, "csv_bom", "es", lambda b: b"\xef\xbb\xbf" + b, ext="csv")
    cfg = edit(good, tmp_path / "bom.yaml", lambda d: d.update(prompts=[{"path": bom}]))
    result = runner.invoke(app, ["run", str(cfg), "--dry-run", "--output", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert "iteration 1: prompts en 2, es 2, fr 2" in result.stdout


@pytest.mark.parametrize("dry_run", [True, False])
def test_damaged_model_is_refused_before_a_new_run_directory_is_made(finished_run, tmp_path, dry_run):
    root, good = finished_run
    cfg = edit(good, tmp_path / "cut.yaml", lambda d: d.update(model=bad_model(root, "cut_new", cut_half)))
    new = tmp_path / "new"
    result = runner.invoke(app, ["run", str(cfg), "--output", str(new), *(["--dry-run"] if dry_run else [])])
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "cut_new/model.safetensors is cut" in err, err
    assert not new.exists()
