"""Bad input: a clear one-line error, a non-zero exit, and an existing run directory unchanged."""

from __future__ import annotations

import hashlib
import shutil

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
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_clear_error_and_changes_nothing(finished_run, case):
    root, good = finished_run
    change, message = CASES[case]
    bad = edit(good, root / f"{case.replace(' ', '_')}.yaml", lambda d: change(d, root))
    before = snapshot(root / "run")
    result = runner.invoke(app, ["run", str(bad), "--output", str(root / "run")])
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
