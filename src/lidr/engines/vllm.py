"""vLLM engine: the offline `vllm.LLM` on one or more CUDA GPUs, with continuous batching.

Prompts are formatted by `lidr.chat.format_chat` (as on every engine) and handed to vLLM as
token ids, tokenized here without special tokens: given text, vLLM would add the tokenizer's
BOS in front of a chat template that already writes one. Each request gets its own
`SamplingParams`, so its max_new_tokens, stop strings and seed (from its id: a resumed shard
regenerates identically) hold however vLLM schedules it.

The helpers `sampling_kwargs`, `prompt_token_ids` and `completion_from_output` need no vLLM.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from lidr.chat import format_chat
from lidr.config import GenerationConfig
from lidr.engines.base import ChatRequest, Completion, EngineError, ProgressFn, Sampling, cut_at_stop, \
    free_accelerator_memory, request_sampling, request_seed

DTYPES = ("auto", "float32", "bfloat16", "float16")


class EngineUnavailable(EngineError):
    """The engine cannot run here (vLLM missing); the message says what to install."""


def require_vllm() -> Any:
    """The `vllm` module, or EngineUnavailable saying how to get it."""
    try:
        import vllm
    except ImportError as e:
        raise EngineUnavailable(
            f"the vllm engine needs vLLM and a CUDA GPU: pip install 'lidr[vllm]' ({e}); "
            "`engine: hf` runs anywhere"
        ) from None
    return vllm


def check() -> None:
    """Fail before a run writes anything when vLLM is missing."""
    require_vllm()


def build(gen: GenerationConfig, model_path: str, *, batch_size: int | None, seed: int,
          log: Callable[[str], None]) -> VLLMEngine:
    """The engine for `engine: vllm`: vLLM schedules its own batches (batch_size is not used)."""
    return VLLMEngine(model_path, dtype=gen.dtype, seed=seed, **gen.vllm.model_dump())


def sampling_kwargs(request: ChatRequest, sampling: Sampling) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for one request."""
    sampling = request_sampling(sampling, request)
    greedy = sampling.temperature <= 0
    return dict(
        temperature=0.0 if greedy else sampling.temperature,
        top_p=1.0 if greedy else sampling.top_p,
        repetition_penalty=sampling.repetition_penalty,
        max_tokens=request.max_new_tokens,
        stop=list(request.stop),
        include_stop_str_in_output=True,  # the text ends with the stop string, as on the hf engine
        skip_special_tokens=True,
        # From the id, not the position: the same request samples the same text in any batch.
        seed=request_seed(sampling.seed, request.id),
    )


def prompt_token_ids(tokenizer: Any, request: ChatRequest) -> list[int]:
    """The chat-formatted prompt (prefill included) as token ids, with no BOS added."""
    text = format_chat(tokenizer, request.messages, request.prefill)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def completion_from_output(request: ChatRequest, output: Any) -> Completion:
    """A `Completion` from a vLLM `RequestOutput` (its first, and only, sequence)."""
    seq = output.outputs[0]
    finish = "stop" if seq.finish_reason == "stop" else "length"  # None, "abort": cut short
    text, stopped = cut_at_stop(seq.text, request.stop)
    return Completion(request.id, text, "stop" if stopped else finish, len(seq.token_ids))


class VLLMEngine:
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        seed: int = 0,
        extra_args: dict | None = None,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self._llm = None
        vllm = require_vllm()
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        # No data_parallel_size: vLLM >= 0.11.1 refuses it in one offline process (unless under
        # torchrun). Data parallel generation is lidr's workers (`lidr run --worker i --workers N`),
        # one vLLM engine each on its own GPUs, the same on one machine or many.
        args = dict(
            dtype=dtype, tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
            enforce_eager=enforce_eager, seed=seed,
        )
        args.update(extra_args or {})
        self._vllm = vllm
        self._llm = vllm.LLM(model=str(model_path), **args)

    def generate(
        self, requests: list[ChatRequest], sampling: Sampling, progress: ProgressFn | None = None
    ) -> list[Completion]:
        if not requests:
            return []
        if self._llm is None:
            raise EngineError("the vllm engine was closed")
        prompts = [{"prompt_token_ids": prompt_token_ids(self.tokenizer, r)} for r in requests]
        params = [self._vllm.SamplingParams(**sampling_kwargs(r, sampling)) for r in requests]
        outputs = self._llm.generate(prompts, sampling_params=params, use_tqdm=False)
        out = [completion_from_output(r, o) for r, o in zip(requests, outputs, strict=True)]
        if progress:
            progress(len(out), sum(c.n_tokens for c in out))
        return out

    def close(self) -> None:
        """Stop vLLM's engine (and its worker processes) and free GPU memory; idempotent."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        stop = getattr(llm, "shutdown", None) or getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if stop is not None:
            with contextlib.suppress(Exception):
                stop()
        with contextlib.suppress(AttributeError):
            del llm.llm_engine
        del llm, engine, stop
        _release_gpu()


def _release_gpu() -> None:
    """Tear down vLLM's distributed state, then give cached CUDA memory back."""
    with contextlib.suppress(Exception):  # these have moved between vLLM versions
        from vllm.distributed import parallel_state as ps

        if hasattr(ps, "cleanup_dist_env_and_memory"):
            ps.cleanup_dist_env_and_memory()
        else:
            ps.destroy_model_parallel()
            ps.destroy_distributed_environment()
    free_accelerator_memory()
