"""The CTranslate2 engine: the same completions as the hf engine in float32 (greedy text,
finish reasons, token counts) for prefilled turns, stop strings and per-request caps; each
model converted once; a clear error when CTranslate2 is missing; a whole run on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_config, write_prompt_set
from lidr.engines.base import ChatRequest, Sampling
from lidr.chat import format_chat
from lidr.engines.ct2 import CT2Engine, model_hash, shared_prefix_length
from lidr.engines.hf import HFEngine
from lidr.stages.translate import CLOSE, PREFILL, translation_message

pytest.importorskip("ctranslate2")


def _requests() -> list[ChatRequest]:
    reqs = []
    for k, text in enumerate(["Say hi.", "Tom has 12 apples. He buys 4 more. How many apples does Tom have now?",
                              "Write a long story about the sea.", "¿Cuánto es 7 más 5?", "Name a colour.",
                              "Décris un chat.", "List five fruits.", "Hallo"]):
        cap = (6, 48, 17)[k % 3]  # different caps inside one batch
        reqs.append(ChatRequest(f"r{k}", [{"role": "user", "content": text}], max_new_tokens=cap))
    for k, (source, lang) in enumerate([("Tom has 16 apples.", "es"), ("I like the sea.", "fr"),
                                        ("Der Hund schläft.", "en")]):
        reqs.append(ChatRequest(f"t{k}", translation_message(source, lang), max_new_tokens=40,
                                prefill=PREFILL, stop=(CLOSE,)))
    return reqs


@pytest.fixture(scope="module")
def ct2_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ct2-cache")


@pytest.mark.parametrize("model", ["tiny_model_dir", "translating_model_dir", "smollm2_dir"])
def test_greedy_completions_equal_hf_fp32(model, request, ct2_cache):
    model_dir = str(request.getfixturevalue(model))
    reqs, sampling = _requests(), Sampling()
    hf = HFEngine(model_dir, dtype="float32", batch_size=len(reqs))
    # One call per kind, as the stages make them: transformers applies a batch's stop strings
    # to every row of it, so a plain request batched with translations would stop at
    # `</translated>` on the hf engine (CTranslate2 stops each row on its own strings).
    plain = [r for r in reqs if not r.stop]
    expected_by_id = {c.id: c for c in hf.generate(plain, sampling) + hf.generate(reqs[len(plain):], sampling)}
    expected = [expected_by_id[r.id] for r in reqs]
    hf.close()
    ct2 = CT2Engine(model_dir, batch_size=4, cache=ct2_cache)  # several batches, sorted by length
    got = ct2.generate(reqs, sampling)
    ct2.close()
    assert [c.text for c in got] == [c.text for c in expected]
    assert got == expected  # ids, finish reasons and token counts too
    for r, c in zip(reqs, got):
        assert c.n_tokens <= r.max_new_tokens
        assert c.finish_reason in ("stop", "length")
        if c.finish_reason == "stop" and r.stop and CLOSE in c.text:
            assert c.text.endswith(CLOSE)  # the stop string is kept, nothing after it


def test_stop_string_and_caps_on_a_model_that_closes_the_tag(translating_model_dir, ct2_cache):
    """The translating tiny model answers every translation request with a phrase and `</translated>`."""
    engine = CT2Engine(str(translating_model_dir), batch_size=8, cache=ct2_cache)
    reqs = _requests()
    out = {c.id: c for c in engine.generate(reqs, Sampling())}
    assert out["t0"].text == "hola amigo\n" + CLOSE and out["t0"].finish_reason == "stop"
    assert out["t1"].text == "bonjour ami\n" + CLOSE
    assert out["t2"].text == "hello friend\n" + CLOSE
    capped = ChatRequest("c", reqs[-1].messages, max_new_tokens=2, prefill=PREFILL, stop=(CLOSE,))
    [c] = engine.generate([capped], Sampling())
    assert (c.n_tokens, c.finish_reason) == (2, "length") and CLOSE not in c.text
    engine.close()


def test_repetition_penalty_is_applied(smollm2_dir, ct2_cache):
    """CTranslate2 has its own repetition penalty (its text differs from hf's at 1.1, see
    benchmarks/RESULTS.md); it must still change what a looping model writes."""
    engine = CT2Engine(str(smollm2_dir), batch_size=11, cache=ct2_cache)
    reqs = _requests()
    plain, penalised = engine.generate(reqs, Sampling()), engine.generate(reqs, Sampling(repetition_penalty=1.3))
    engine.close()
    changed = sum(a.text != b.text for a, b in zip(plain, penalised))
    assert changed >= len(reqs) // 2, changed


def test_sampling_is_seeded_and_differs_from_greedy(smollm2_dir, ct2_cache):
    engine = CT2Engine(str(smollm2_dir), batch_size=8, cache=ct2_cache)
    reqs = _requests()[:4]
    hot = Sampling(temperature=1.0, top_p=0.95, seed=3)
    a, b = engine.generate(reqs, hot), engine.generate(reqs, hot)
    assert a == b
    assert engine.generate(reqs, Sampling(temperature=1.0, top_p=0.95, seed=4)) != a
    assert engine.generate(reqs, Sampling()) != a
    engine.close()


def test_each_model_is_converted_once(tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    first = CT2Engine(str(tiny_model_dir), cache=cache)
    converted = first.model_dir
    stamp = (converted / "model.bin").stat().st_mtime_ns
    first.close()
    again = CT2Engine(str(tiny_model_dir), cache=cache)
    assert again.model_dir == converted and (converted / "model.bin").stat().st_mtime_ns == stamp
    again.close()
    assert [p.name for p in cache.iterdir()] == [converted.name]  # no temporary folder left
    # Another model (same files but different weights) gets its own conversion.
    import torch
    from transformers import AutoModelForCausalLM

    other = tmp_path / "other"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    model.save_pretrained(other)
    assert model_hash(other) != model_hash(Path(tiny_model_dir))


def test_missing_ctranslate2_is_one_line(tmp_path, tiny_model_dir):
    """With CTranslate2 not importable, `engine: ct2` fails before anything is written."""
    prompts = write_prompt_set(tmp_path / "prompts", n=2)
    cfg = write_config(tmp_path / "run.yaml", tiny_model_dir, prompts, generation={"engine": "ct2"})
    run_dir = tmp_path / "run"
    code = ("import sys; sys.modules['ctranslate2'] = None\n"
            "from lidr.cli import app; app()")
    proc = subprocess.run([sys.executable, "-c", code, "run", str(cfg), "-o", str(run_dir)],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ctranslate2" in lines[0].lower(), proc.stderr
    assert not run_dir.exists()


def test_two_iterations_on_ct2_train_on_self_translations(tmp_path, translating_model_dir):
    """A whole run with `engine: ct2`: self-translations are parsed and paired, M1 differs from
    M0, and iteration 2 generates with M1 (its responses differ from iteration 1's)."""
    prompts = write_prompt_set(tmp_path / "prompts")
    cfg = write_config(tmp_path / "run.yaml", translating_model_dir, prompts, generation={"engine": "ct2"},
                       training={"learning_rate": 1e-3})
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "-o", str(run_dir)],
                          capture_output=True, text=True, env={**__import__("os").environ,
                                                               "LIDR_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    import pyarrow.parquet as pq

    for t in (1, 2):
        done = json.loads((run_dir / f"iter_{t}" / "translations" / "_done.json").read_text())
        assert done["engine"] == "ct2"
        pairs = pq.read_table(run_dir / f"iter_{t}" / "pairs" / "pairs.parquet").to_pylist()
        translated = [p for p in pairs if p["language"] != "en" and "translation" in p["chosen_source"]]
        assert translated, f"iteration {t} trained on no self-translated pair"
    r1 = pq.read_table(run_dir / "iter_1" / "responses").column("response").to_pylist()
    r2 = pq.read_table(run_dir / "iter_2" / "responses").column("response").to_pylist()
    assert r1 != r2
    assert len(list((tmp_path / "cache" / "ct2").iterdir())) == 2  # M0 and M1 (M2 only saved)


@pytest.mark.parametrize("engine_kind", ["ct2", "hf"])
def test_a_looping_row_ends_early_only_when_asked(engine_kind, smollm2_dir, ct2_cache):
    """stop_on_loop: a row whose text has become a loop ends early, cut off ("length"), with
    the text the full run starts with; a row that does not loop is untouched."""
    from lidr.text.quality import is_looping

    if engine_kind == "ct2":
        engine = CT2Engine(str(smollm2_dir), batch_size=8, cache=ct2_cache)
    else:
        engine = HFEngine(str(smollm2_dir), dtype="float32", batch_size=8, evict_every=16)
    # SmolLM2-135M loops on these (German and Spanish answers repeat a sentence), not on "Say hi."
    prompts = ["Erzähle mir eine lange Geschichte über einen Hund, der Fußball spielt.",
               "Escribe una lista de 50 frutas diferentes.", "Say hi."]
    reqs = [ChatRequest(f"q{k}", [{"role": "user", "content": p}], max_new_tokens=256) for k, p in enumerate(prompts)]
    full = engine.generate(reqs, Sampling())
    cut = engine.generate([ChatRequest(r.id, r.messages, r.max_new_tokens, stop_on_loop=True) for r in reqs],
                          Sampling())
    looped = [k for k, c in enumerate(full) if is_looping(c.text) and c.finish_reason == "length"]
    assert looped, [c.text[:200] for c in full]  # the premise: some answers loop to their cap
    for k, (f, c) in enumerate(zip(full, cut)):
        if k in looped:
            assert c.n_tokens < f.n_tokens and c.finish_reason == "length" and is_looping(c.text), (k, c)
            assert f.text.startswith(c.text.rstrip()[:-8]), (k, c.text[-80:])
        elif not is_looping(c.text):
            assert c == f, k
    engine.close()


def test_compute_type_from_the_command_line(tiny_model_dir):
    """`lidr eval/translate-prompts --compute-type int8` reaches the engine; with another
    engine it is refused in one line."""
    from typer.testing import CliRunner

    from lidr.cli import _generation_config, app
    from lidr.engines import engine_from_config

    engine = engine_from_config(_generation_config("ct2", None, None, None, 4, "int8"), str(tiny_model_dir))
    try:
        assert isinstance(engine, CT2Engine) and engine.compute_type == "int8"
    finally:
        engine.close()
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--task", "mgsm", "--languages", "es",
                                      "--data", "bundled:arith/dev/{lang}.jsonl", "--engine", "hf",
                                      "--compute-type", "int8", "-o", "unused"])
    assert result.exit_code == 2 and "--compute-type int8 is for the ct2 engine, not --engine hf" in result.stderr


def test_greedy_batches_run_two_at_once_with_the_same_completions(smollm2_dir, ct2_cache):
    """workers 2 (generation.ct2.workers): a call's greedy batches run two at a time, each
    on one core, and come back in request order, equal to one batch at a time on both cores;
    sampled batches run one at a time on every core, seeded as before."""
    reqs = _requests()
    one = CT2Engine(str(smollm2_dir), batch_size=4, workers=1, intra_threads=2, cache=ct2_cache)
    two = CT2Engine(str(smollm2_dir), batch_size=8, workers=2, intra_threads=2, cache=ct2_cache)
    assert (one.workers, two.workers) == (1, 2)
    greedy = [two.generate(reqs, Sampling()), one.generate(reqs, Sampling())]
    assert two.generator.num_generators == 2 and one.generator.num_generators == 1
    assert [c.id for c in greedy[0]] == [r.id for r in reqs]
    assert greedy[0] == greedy[1]  # two batches of 4 at once = batches of 4 one after the other
    hot = Sampling(temperature=1.0, top_p=0.95, seed=3)
    sampled = [two.generate(reqs[:4], hot), one.generate(reqs[:4], hot)]
    assert two.generator.num_generators == 1  # reloaded for one seeded batch at a time
    assert sampled[0] == sampled[1]
    assert two.generate(reqs, Sampling()) == greedy[0] and two.generator.num_generators == 2
    one.close()
    two.close()


def test_shared_prefix_leaves_every_row_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # identical prompts: the last token decodes
    assert shared_prefix_length([[1, 2], [1, 2, 3, 4]]) == 1  # one prompt the head of another
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0
    assert shared_prefix_length([[5, 6, 7]]) == 2  # a batch of one: all but its last token


def test_a_batch_runs_its_shared_head_once_with_the_same_completions(smollm2_dir, ct2_cache):
    """The chat template's system turn (and a translation request's instructions) is the head
    every row of a batch shares: it is run once and copied to every row, and the completions
    are those of each request run alone."""
    engine = CT2Engine(str(smollm2_dir), batch_size=16, cache=ct2_cache)
    reqs = _requests()
    reqs.append(ChatRequest("same", reqs[1].messages, max_new_tokens=20))  # a prompt repeated
    tok = engine.tokenizer
    ids = tok([format_chat(tok, r.messages, r.prefill) for r in reqs], add_special_tokens=False)["input_ids"]
    system_turn = format_chat(tok, [{"role": "user", "content": "x"}]).split("<|im_start|>user")[0]
    assert shared_prefix_length(ids) >= len(tok(system_turn, add_special_tokens=False)["input_ids"])
    translations = [i for r, i in zip(reqs, ids) if r.stop]
    assert shared_prefix_length(translations) > shared_prefix_length(ids)  # the instructions too
    batched = engine.generate([r for r in reqs if not r.stop], Sampling()) + \
        engine.generate([r for r in reqs if r.stop], Sampling())
    plain_head, translation_head = shared_prefix_length([i for r, i in zip(reqs, ids) if not r.stop]), \
        shared_prefix_length(translations)
    heads_run_once = sum(map(len, ids)) - (len(reqs) - len(translations) - 1) * plain_head \
        - (len(translations) - 1) * translation_head
    assert engine.prompt_tokens_run == heads_run_once
    alone = [engine.generate([r], Sampling())[0] for r in reqs if not r.stop] + \
        [engine.generate([r], Sampling())[0] for r in reqs if r.stop]
    engine.close()
    assert batched == alone
