"""A run keeps the engine `engine: auto` chose when it started (RUN/engine.json), so a resume on
another kind of CPU does not mix two engines' texts in one run (lidr/engines/pinned.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from helpers import write_config, write_prompt_set
from lidr.config import GenerationConfig
from lidr.engines import pinned
from lidr.errors import ConfigError
from lidr.store import DamagedFileError, read_json


def other_than(engine: str) -> str:
    return "hf" if engine == "ct2" else "ct2"


def test_a_new_run_records_this_machines_choice(tmp_path):
    gen = GenerationConfig()
    here = pinned.choose_here(gen)
    pinned_gen, record = pinned.pin_engine(gen, tmp_path, None, print)
    assert record == here
    if here["engine"] == "hf":  # the hf engine's own `auto` dtype also moves with the CPU: recorded as it resolved
        assert here["dtype"] in ("float32", "bfloat16", "float16")
    assert (pinned_gen.engine, pinned_gen.dtype) == (here["engine"], here["dtype"])
    pinned.write_record(tmp_path, record)
    # Resumed here: the same engine, nothing new to write.
    again, record = pinned.pin_engine(gen, tmp_path, None, print)
    assert record is None and (again.engine, again.dtype) == (here["engine"], here["dtype"])


def test_a_resume_keeps_the_recorded_engine_and_says_so(tmp_path):
    gen = GenerationConfig()
    other = other_than(pinned.choose_here(gen)["engine"])
    (tmp_path / pinned.ENGINE_FILE).write_text(json.dumps({"engine": other, "dtype": "float32",
                                                           "machine": "a CPU elsewhere"}))
    said = []
    resumed, record = pinned.pin_engine(gen, tmp_path, None, said.append)
    assert (resumed.engine, resumed.dtype, record) == (other, "float32", None)
    assert len(said) == 1 and "a CPU elsewhere" in said[0] and "this machine would choose" in said[0]


def test_a_named_engine_is_not_pinned(tmp_path):
    (tmp_path / pinned.ENGINE_FILE).write_text(json.dumps({"engine": "hf", "dtype": "bfloat16"}))
    gen = GenerationConfig(engine="ct2")
    assert pinned.pin_engine(gen, tmp_path, None, print) == (gen, None)


def test_reuse_takes_the_engine_of_the_run_it_copies(tmp_path):
    source, run = tmp_path / "source", tmp_path / "run"
    source.mkdir()
    other = other_than(pinned.choose_here(GenerationConfig())["engine"])
    (source / pinned.ENGINE_FILE).write_text(json.dumps({"engine": other, "dtype": "float32"}))
    (source / "config.yaml").write_text(yaml.safe_dump({"generation": {"engine": "auto", "max_new_tokens": 64}}))
    gen, record = pinned.pin_engine(GenerationConfig(), run, source, print)
    assert gen.engine == other and record == {"engine": other, "dtype": "float32"}
    # An ablation that changes what `auto` chooses from chooses anew.
    gen, record = pinned.pin_engine(GenerationConfig(dtype="bfloat16"), run, source, print)
    assert record == pinned.choose_here(GenerationConfig(dtype="bfloat16"))


def test_a_damaged_record_is_named(tmp_path):
    (tmp_path / pinned.ENGINE_FILE).write_text('{"engine": "hf"')
    with pytest.raises(DamagedFileError, match="engine.json"):
        pinned.pin_engine(GenerationConfig(), tmp_path, None, print)
    (tmp_path / pinned.ENGINE_FILE).write_text('{"engine": "hf"}')
    with pytest.raises(DamagedFileError, match="'dtype'"):
        pinned.pin_engine(GenerationConfig(), tmp_path, None, print)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a recorded GPU engine on a CPU-only machine")
def test_a_recorded_engine_that_cannot_run_here_is_refused_with_the_way_out(tmp_path):
    (tmp_path / pinned.ENGINE_FILE).write_text(json.dumps({"engine": "vllm", "dtype": "bfloat16"}))
    gen, _ = pinned.pin_engine(GenerationConfig(), tmp_path, None, print)
    with pytest.raises(ConfigError, match="engine.json.*delete"):
        pinned.check_pinned(gen, tmp_path)


def lidr_run(cfg, out):
    done = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "--output", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_a_run_writes_its_engine_and_a_resume_elsewhere_runs_it(tmp_path, tiny_model_dir):
    prompts = write_prompt_set(tmp_path / "prompts", n=2)
    cfg = write_config(tmp_path / "run.yaml", tiny_model_dir, prompts, iterations=1)
    here = pinned.choose_here(GenerationConfig(dtype="float32"))

    fresh = tmp_path / "fresh"
    lidr_run(cfg, fresh)
    assert {k: v for k, v in read_json(fresh / pinned.ENGINE_FILE).items() if k != "machine"} == \
        {"engine": here["engine"], "dtype": "float32"}
    assert read_json(fresh / "iter_1" / "responses" / "_done.json")["engine"] == here["engine"]

    # A run started on a machine whose `auto` chose the other engine, cut before its first stage.
    started_elsewhere = tmp_path / "started_elsewhere"
    started_elsewhere.mkdir()
    for name in ("config.yaml", "config_dir.json"):
        shutil.copy(fresh / name, started_elsewhere / name)
    other = other_than(here["engine"])
    (started_elsewhere / pinned.ENGINE_FILE).write_text(json.dumps({"engine": other, "dtype": "float32",
                                                                    "machine": "a CPU elsewhere"}))
    said = lidr_run(cfg, started_elsewhere)
    assert "this machine would choose" in said
    for stage in ("responses", "translations"):
        assert read_json(started_elsewhere / "iter_1" / stage / "_done.json")["engine"] == other
