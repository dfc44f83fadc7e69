"""Damaged run state, made by hand on a real finished tiny run: each bad file is found on
resume, named in a warning and redone, and the run ends as an undamaged one does; what
cannot be redone safely is a one-line error naming the file."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from helpers import write_config, write_prompt_set
from lidr.cli import app
from lidr.store import read_json

runner = CliRunner()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    """A finished 1-iteration run, several shards per stage, and its config."""
    root = tmp_path_factory.mktemp("damaged")
    prompts = write_prompt_set(root / "prompts", n=6)  # p5 is a translation request: pairs
    cfg = write_config(root / "run.yaml", tiny_model_dir, prompts, iterations=1, generation={"shard_size": 4})
    result = runner.invoke(app, ["run", str(cfg), "--output", str(root / "reference")])
    assert result.exit_code == 0, result.output
    return root / "reference", cfg


def flat(text):
    """Log lines are wrapped at the console width; compare without any whitespace."""
    return re.sub(r"\s+", "", text)


def cut(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def stage(name, file):
    return lambda run: run / "iter_1" / name / file


# name -> (file to damage, how, what the warning says about it)
REDONE = {
    "responses shard deleted": (stage("responses", "shard_00001.parquet"), lambda p: p.unlink(), "is missing"),
    "responses shard cut": (stage("responses", "shard_00000.parquet"), cut, "is damaged (not a readable parquet"),
    "translations shard empty": (stage("translations", "shard_00002.parquet"), lambda p: p.write_bytes(b""),
                                 "is damaged (not a readable parquet"),
    "translations _done.json cut": (stage("translations", "_done.json"), cut, "is damaged; the stage is checked"),
    "pairs file cut": (stage("pairs", "pairs.parquet"), cut, "is damaged (not a readable parquet"),
    "model weights cut": (lambda run: run / "iter_1" / "model" / "model.safetensors", cut, "is cut"),
}


def copy_of(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    return run


def assert_same_results(run, reference):
    for name in ("responses", "translations"):
        a, b = (read_json(d / "iter_1" / name / "_done.json") for d in (run, reference))
        assert (a["n"], a["hash"]) == (b["n"], b["hash"]), name
    rows = [pq.read_table(d / "iter_1" / "pairs" / "pairs.parquet").to_pylist() for d in (run, reference)]
    assert rows[0] == rows[1]
    assert read_json(run / "iter_1" / "pairs" / "_done.json")["n"] == len(rows[1])


@pytest.mark.parametrize("case", list(REDONE))
def test_damaged_file_is_named_and_redone(reference, tmp_path, case):
    ref, cfg = reference
    run = copy_of(ref, tmp_path)
    where, damage, says = REDONE[case]
    target = where(run)
    damage(target)
    result = runner.invoke(app, ["run", str(cfg), "--output", str(run)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert flat(f"{target} {says}") in flat(result.stderr), result.stderr
    assert target.is_file() and target.stat().st_size > 0
    assert_same_results(run, ref)
    if case == "model weights cut":  # training again from the same pairs and seed gives the same M1
        assert target.read_bytes() == where(ref).read_bytes()


def test_missing_shard_of_a_finished_stage_is_not_silently_skipped(reference, tmp_path):
    """_done.json says n rows; a shard gone (and its plan cut) must be redone, not used short."""
    ref, cfg = reference
    run = copy_of(ref, tmp_path)
    responses = run / "iter_1" / "responses"
    (responses / "shard_00003.parquet").unlink()
    plan = responses / "_plan.json"
    plan.write_text(plan.read_text()[:10])
    result = runner.invoke(app, ["run", str(cfg), "--output", str(run)])
    assert result.exit_code == 0, result.output
    err = flat(result.stderr)
    assert flat(f"{responses} holds 14 rows, its _done.json records 18") in err, result.stderr
    assert flat(f"{plan} is damaged; rewriting it") in err
    assert "iter1generate:shard4/5written" in err  # only the missing shard is generated again
    assert read_json(plan) == read_json(ref / "iter_1" / "responses" / "_plan.json")
    assert_same_results(run, ref)


def test_stale_temp_files_are_cleaned(reference, tmp_path):
    ref, cfg = reference
    run = copy_of(ref, tmp_path)
    responses = run / "iter_1" / "responses"
    dead = responses / f".shard_00000.parquet.tmp.{socket.gethostname()}.999999999"
    other_host = responses / ".shard_00001.parquet.tmp.elsewhere.1234"
    for f in (dead, other_host):
        f.write_bytes(b"PAR1 half a shard")
    result = runner.invoke(app, ["run", str(cfg), "--output", str(run)])
    assert result.exit_code == 0, result.output
    assert not dead.exists()
    assert other_host.exists()  # another machine's writer may still be at work


def tree(folder):
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def test_cut_config_yaml_of_this_config_is_rewritten(reference, tmp_path):
    """A prefix of this config's own text can only come from this config: resume and rewrite it."""
    ref, cfg = reference
    run = copy_of(ref, tmp_path)
    cut(run / "config.yaml")
    result = runner.invoke(app, ["run", str(cfg), "--output", str(run)])
    assert result.exit_code == 0, result.output
    assert flat(f"{run / 'config.yaml'} is cut short") in flat(result.stderr)
    assert (run / "config.yaml").read_bytes() == (ref / "config.yaml").read_bytes()


@pytest.mark.parametrize("garbage", [b"model: [unclosed\n", b"", b"\xff\xfe not text"])
def test_garbled_config_yaml_is_a_clear_error_and_changes_nothing(reference, tmp_path, garbage):
    ref, cfg = reference
    run = copy_of(ref, tmp_path)
    (run / "config.yaml").write_bytes(garbage)
    before = tree(run)
    result = runner.invoke(app, ["run", str(cfg), "--output", str(run)])
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and f"{run / 'config.yaml'} is damaged" in err, err
    assert tree(run) == before


@pytest.mark.parametrize("file", ["iter_1/pairs/_done.json", "iter_1/train/_done.json"])
def test_status_names_a_damaged_file(reference, tmp_path, file):
    ref, _ = reference
    run = copy_of(ref, tmp_path)
    cut(run / file)
    result = runner.invoke(app, ["status", str(run)])
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and f"{run / file} is damaged (not valid JSON" in err, err
