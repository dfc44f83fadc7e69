"""The vLLM engine: its vLLM-free helpers always; the engine itself where vLLM and a CUDA GPU are."""

from __future__ import annotations

import importlib.util
import time
from types import SimpleNamespace

import pytest

from lidr.chat import format_chat
from lidr.config import GenerationConfig
from lidr.engines import ChatRequest, Sampling, engine_from_config
from lidr.engines.vllm import (
    EngineUnavailable,
    VLLMEngine,
    completion_from_output,
    prompt_token_ids,
    sampling_kwargs,
)

HAS_VLLM = importlib.util.find_spec("vllm") is not None
TRANSLATE = ChatRequest(
    "t1", [{"role": "user", "content": "Translate into German: Good morning."}], max_new_tokens=48,
    prefill="<translated>\n", stop=("</translated>",),
)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ----- SamplingParams -----


def test_greedy_sampling_kwargs():
    kw = sampling_kwargs(TRANSLATE, Sampling(temperature=0.0, top_p=0.9, repetition_penalty=1.1))
    assert kw["temperature"] == 0.0 and kw["top_p"] == 1.0  # top_p means nothing when greedy
    assert kw["repetition_penalty"] == 1.1
    assert kw["max_tokens"] == 48
    assert kw["stop"] == ["</translated>"] and kw["include_stop_str_in_output"] is True
    assert kw["skip_special_tokens"] is True


def test_sampling_kwargs_when_sampling():
    req = ChatRequest("r", [{"role": "user", "content": "hi"}], max_new_tokens=7)
    kw = sampling_kwargs(req, Sampling(temperature=0.7, top_p=0.95, seed=3))
    assert (kw["temperature"], kw["top_p"], kw["max_tokens"], kw["stop"]) == (0.7, 0.95, 7, [])


def test_a_request_samples_at_its_own_temperature():
    req = ChatRequest("r#1", [{"role": "user", "content": "hi"}], max_new_tokens=7, temperature=0.7)
    kw = sampling_kwargs(req, Sampling(temperature=0.0, top_p=0.95, seed=3))  # the stage is greedy
    assert (kw["temperature"], kw["top_p"]) == (0.7, 0.95)


def test_seed_follows_the_request_id_and_the_run_seed():
    def seed(rid: str, run_seed: int = 0) -> int:
        req = ChatRequest(rid, [{"role": "user", "content": "hi"}], max_new_tokens=8)
        return sampling_kwargs(req, Sampling(temperature=1.0, seed=run_seed))["seed"]

    assert seed("a") == seed("a")  # a resumed shard samples the same text again
    assert len({seed(f"p{i}") for i in range(50)}) == 50
    assert seed("a", 0) != seed("a", 1)
    assert all(0 <= seed(f"p{i}", 2**40) < 2**31 for i in range(10))


def test_each_request_keeps_its_own_cap():
    reqs = [ChatRequest(f"r{n}", [{"role": "user", "content": "hi"}], max_new_tokens=n) for n in (1, 64, 512)]
    assert [sampling_kwargs(r, Sampling())["max_tokens"] for r in reqs] == [1, 64, 512]


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed")
def test_vllm_accepts_the_sampling_kwargs():
    from vllm import SamplingParams

    p = SamplingParams(**sampling_kwargs(TRANSLATE, Sampling(temperature=0.8, top_p=0.9, seed=1)))
    assert p.max_tokens == 48 and p.stop == ["</translated>"] and p.include_stop_str_in_output


# ----- prompts -----


def test_prompt_is_the_chat_template_with_the_prefill(smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    ids = prompt_token_ids(tok, TRANSLATE)
    text = format_chat(tok, TRANSLATE.messages, TRANSLATE.prefill)  # what the hf engine feeds its model
    assert text.endswith("<|im_start|>assistant\n<translated>\n")
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id


def test_prompt_has_one_bos_where_the_tokenizer_adds_one(smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir, add_bos_token=True)
    text = format_chat(tok, TRANSLATE.messages, TRANSLATE.prefill)
    bos = tok.bos_token_id
    assert tok(text)["input_ids"][:2] == [bos, bos]  # a text prompt would start with two
    ids = prompt_token_ids(tok, TRANSLATE)
    assert ids[0] == bos and ids[1] != bos


# ----- outputs -----


def _output(text: str, token_ids: list[int], finish_reason: str | None) -> SimpleNamespace:
    """The part of a vLLM RequestOutput the engine reads."""
    return SimpleNamespace(outputs=[SimpleNamespace(text=text, token_ids=token_ids, finish_reason=finish_reason)])


def test_completion_keeps_the_stop_string():
    c = completion_from_output(TRANSLATE, _output("Guten Morgen.\n</translated>", [5, 6, 7, 8], "stop"))
    assert (c.id, c.text, c.finish_reason, c.n_tokens) == ("t1", "Guten Morgen.\n</translated>", "stop", 4)


def test_completion_end_of_turn_and_length():
    assert completion_from_output(TRANSLATE, _output("Hallo", [1, 2], "stop")).finish_reason == "stop"
    c = completion_from_output(TRANSLATE, _output("Guten Mor", list(range(48)), "length"))
    assert (c.text, c.finish_reason, c.n_tokens) == ("Guten Mor", "length", 48)


@pytest.mark.parametrize("reason", [None, "abort"])
def test_unfinished_output_reads_as_length(reason):
    assert completion_from_output(TRANSLATE, _output("Gu", [1], reason)).finish_reason == "length"


def test_text_is_cut_after_the_first_stop_string():
    c = completion_from_output(TRANSLATE, _output("Hallo</translated> extra</translated>", [1, 2, 3], "length"))
    assert (c.text, c.finish_reason) == ("Hallo</translated>", "stop")


# ----- the engine -----


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here")
def test_engine_without_vllm_names_the_extra(smollm2_dir):
    with pytest.raises(EngineUnavailable, match=r"lidr\[vllm\]") as e:
        VLLMEngine(str(smollm2_dir), tensor_parallel_size=1)
    assert isinstance(e.value, ValueError) and "engine: hf" in str(e.value)


def test_unknown_engine_lists_vllm():
    with pytest.raises(ValueError, match="hf, ct2, openai, vllm"):
        # A name the config would refuse, past validation: the factory refuses it too.
        engine_from_config(GenerationConfig.model_construct(engine="nope"), "m")


def _gpu_used() -> int:
    import torch

    free, total = torch.cuda.mem_get_info()
    return total - free


@pytest.mark.slow
@pytest.mark.skipif(not (HAS_VLLM and _cuda()), reason="needs vllm and a CUDA GPU")
def test_vllm_engine_on_smollm2(smollm2_dir):
    user = [{"role": "user", "content": "Name three colours."}]
    reqs = [
        ChatRequest("a", user, max_new_tokens=32),
        TRANSLATE,
        ChatRequest("c", user, max_new_tokens=1),
        ChatRequest("d", user, max_new_tokens=64, stop=("e",)),  # English text has an "e" soon
    ]
    calls = []
    engine = VLLMEngine(str(smollm2_dir), gpu_memory_utilization=0.3, enforce_eager=True)
    try:
        out = engine.generate(reqs, Sampling(), progress=lambda n, t: calls.append((n, t)))
        # The model runs in vLLM's engine process: the device's used memory tells, not this process's.
        loaded = _gpu_used()
    finally:
        engine.close()
    engine.close()  # idempotent

    assert [c.id for c in out] == ["a", "t1", "c", "d"]
    assert calls == [(4, sum(c.n_tokens for c in out))]
    assert out[0].text and out[0].finish_reason in ("stop", "length") and 0 < out[0].n_tokens <= 32
    t = out[1]
    assert 0 < t.n_tokens <= 48
    if t.finish_reason == "stop" and "</translated>" in t.text:
        assert t.text.endswith("</translated>") and t.text.count("</translated>") == 1
    assert (out[2].finish_reason, out[2].n_tokens) == ("length", 1)
    assert out[3].finish_reason == "stop" and out[3].text.endswith("e") and "e" not in out[3].text[:-1]

    import torch

    total = torch.cuda.mem_get_info()[1]
    for _ in range(60):  # the engine process may take a moment to exit
        if _gpu_used() < loaded - 0.1 * total:
            break
        time.sleep(0.5)
    assert _gpu_used() < loaded - 0.1 * total, "close() left the model's GPU memory in use"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_run_with_vllm_engine_fails_before_writing(tmp_path, tiny_model_dir):
    """`generation.engine: vllm` without vLLM: one clear line, exit 2, no run directory."""
    import subprocess
    import sys

    from helpers import write_config, write_prompt_set

    cfg = write_config(tmp_path / "run.yaml", tiny_model_dir, write_prompt_set(tmp_path / "p"),
                       generation={"engine": "vllm", "vllm": {"tensor_parallel_size": 2}})
    res = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg), "-o", str(tmp_path / "run")],
                         capture_output=True, text=True)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "lidr[vllm]" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()
