"""CTranslate2 engine: fast batched generation on the CPU.

CTranslate2 runs a converted copy of the model (its own format, made once per model and
cached by the content hash of the weights), so every model lidr runs (M0, each Mt, a
model under evaluation) is converted the first time it is used; the conversion time
falls in the stage that first loads it. Prompts are the same chat text as on the hf
engine (`lidr.chat`), sent as tokens, so in float32 the greedy text equals the hf
engine's (benchmarks/RESULTS.md).

Per-request token caps and stop strings are enforced from CTranslate2's per-token
callback: returning True ends decoding for that row only, and finished rows leave the
batch inside CTranslate2, so a short request costs only its own tokens. The head that every
prompt of a batch shares (the system turn) is run once per batch, not once per row.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from lidr.chat import format_chat
from lidr.config import GenerationConfig
from lidr.engines.base import ChatRequest, Completion, EngineError, ProgressFn, Sampling, cut_at_stop, \
    in_sorted_batches, ends_in_loop, request_sampling, request_seed

# Files whose bytes define a model's converted form (weights, architecture, vocabulary).
_HASHED = ("config.json", "tokenizer.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


class EngineUnavailable(EngineError):
    """The engine cannot run here; the message says what to install."""


def require_ctranslate2() -> Any:
    # CTranslate2's OpenMP threads spin while they wait by default: on a machine whose cores
    # are busy with other work (a test suite, a second run) that made decoding 10x slower or
    # worse on 2 cores. Passive waiting costs little when the cores are idle
    # (benchmarks/RESULTS.md); a value the user set is kept. Read once, when the library loads.
    # Under the `lidr` command GOMP_SPINCOUNT=10000 (lidr/cli.py) overrides this policy in
    # CTranslate2's libgomp too: measured the same speed, alone and beside other work.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import ctranslate2
    except ImportError as e:
        raise EngineUnavailable(
            f"the ct2 engine needs CTranslate2: pip install ctranslate2==4.8.5 ({e}); `engine: hf` runs anywhere"
        ) from None
    return ctranslate2


def check() -> None:
    """Fail before a run writes anything when CTranslate2 is missing."""
    require_ctranslate2()


def build(gen: GenerationConfig, model_path: str, *, batch_size: int | None, seed: int,
          log: Callable[[str], None]) -> CT2Engine:
    """The engine for `engine: ct2`; `batch_size` overrides gen.batch_size."""
    return CT2Engine(model_path, device=gen.device, batch_size=batch_size or gen.batch_size, log=log,
                     **gen.ct2.model_dump())


def model_hash(model_dir: Path) -> str:
    """A digest of the files that make the model: equal models share one conversion."""
    files = [model_dir / n for n in _HASHED if (model_dir / n).is_file()]
    files += sorted(p for p in model_dir.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise EngineError(f"model {model_dir} has no weights file (*.safetensors or *.bin)")
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode())
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:20]


def converted_model(model_dir: str, cache: Path, log: Callable[[str], None] = print) -> Path:
    """The CTranslate2 copy of `model_dir`, converted on first use into `cache/<hash>`.

    Weights are kept in float32 so that any compute type can be chosen at load time.
    Written under a temporary name and renamed: a killed conversion leaves no half model.
    """
    ct2 = require_ctranslate2()
    src = Path(model_dir)
    if not src.is_dir():  # a hub id: its files, from the hub cache
        from huggingface_hub import snapshot_download

        src = Path(snapshot_download(model_dir, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    target = cache / model_hash(src)
    if (target / "model.bin").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        ct2.converters.TransformersConverter(str(src), low_cpu_mem_usage=True).convert(str(tmp), force=True)
        os.replace(tmp, target)
    except OSError:
        if not (target / "model.bin").is_file():  # another process did not win the race either
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"converted {model_dir} for CTranslate2 in {time.perf_counter() - t0:.1f} s -> {target}")
    return target


def pick_compute_type(compute_type: str, device: str) -> str:
    """"auto": float32 on a CPU (greedy text equal to the hf engine in fp32), else float16/bf16."""
    ct2 = require_ctranslate2()
    supported = ct2.get_supported_compute_types(device)
    if compute_type == "auto":
        if device == "cpu":
            return "float32"
        return "bfloat16" if "bfloat16" in supported else "float16"
    if compute_type not in supported:
        raise EngineError(f"generation.ct2.compute_type {compute_type!r} is not supported on this {device} "
                          f"(supported: {', '.join(sorted(supported))})")
    return compute_type


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CT2Engine:
    name = "ct2"

    def __init__(self, model_path: str, compute_type: str = "auto", device: str = "auto", batch_size: int = 32,
                 intra_threads: int = 0, workers: int = 1, cache: Path | None = None,
                 log: Callable[[str], None] = print):
        ct2 = require_ctranslate2()
        from transformers import AutoTokenizer, GenerationConfig

        from lidr.models import cache_dir

        if device == "auto":
            device = "cuda" if ct2.get_cuda_device_count() > 0 else "cpu"
        device = device.split(":")[0]  # "cuda:0" -> "cuda" (CTranslate2 takes the index apart)
        self.device = device
        self.compute_type = pick_compute_type(compute_type, device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model_dir = converted_model(model_path, cache or cache_dir() / "ct2", log)
        self.intra_threads = intra_threads or available_cores()
        # Greedy batches may run `workers` at a time, each on its share of the cores (a small
        # model's step splits poorly over threads; benchmarks/RESULTS.md).
        self.workers = workers
        self.parallel = workers > 1
        self.generator = self._load()
        try:
            eos = GenerationConfig.from_pretrained(model_path).eos_token_id
        except OSError:  # no generation_config.json: the tokenizer's EOS alone
            eos = None
        ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.stop_ids = sorted(i for i in ids if i is not None)
        self.prompt_tokens_run = 0  # prompt tokens run through the model (a batch's shared head once)
        self._count_lock = threading.Lock()  # batches may run in worker threads

    def _load(self) -> Any:
        """The generator: `workers` batches at once on cores // workers threads each when
        self.parallel, else one batch on every core."""
        import ctranslate2

        inter = self.workers if self.parallel else 1
        return ctranslate2.Generator(str(self.model_dir), device=self.device, compute_type=self.compute_type,
                                     inter_threads=inter, intra_threads=max(1, self.intra_threads // inter))

    def _set_parallel(self, parallel: bool) -> None:
        if self.parallel != parallel:
            self.parallel = parallel
            self.generator.unload_model()
            self.generator = self._load()

    def _reseed(self, seed: int) -> None:
        """Sample a batch from `seed` whatever ran before it. CTranslate2 seeds each worker
        thread's generator once, when the thread first samples, from the last global seed: so
        the seed is set and the model reloaded into fresh threads (about a second, from the
        page cache, against a minute or more of sampling per batch)."""
        import ctranslate2

        ctranslate2.set_random_seed(seed)
        self.parallel = False  # one batch at a time: which worker thread runs it must not matter
        self.generator.unload_model()
        self.generator = self._load()

    def generate(self, requests: list[ChatRequest], sampling: Sampling,
                 progress: ProgressFn | None = None) -> list[Completion]:
        if self.generator is None:
            raise EngineError("the ct2 engine was closed")
        texts = [format_chat(self.tokenizer, r.messages, r.prefill) for r in requests]
        prompt_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        # Sampled batches are seeded by reloading the model (_reseed), so they run one at a time.
        greedy = all(request_sampling(sampling, r).temperature <= 0 for r in requests)
        workers = self.workers if greedy else 1
        self._set_parallel(workers > 1)
        return in_sorted_batches(
            requests, [len(ids) for ids in prompt_ids], -(-self.batch_size // workers),
            lambda idx: self._generate_batch([requests[i] for i in idx], [prompt_ids[i] for i in idx], sampling),
            progress, workers=workers)

    def _generate_batch(self, reqs: list[ChatRequest], prompt_ids: list[list[int]],
                        sampling: Sampling) -> list[Completion]:
        rows = [_Row(self.tokenizer, r, self.stop_ids) for r in reqs]
        sampling = request_sampling(sampling, reqs[0])  # one temperature per batch (in_sorted_batches)
        greedy = sampling.temperature <= 0
        if not greedy:  # seeded from the batch's first id, like the hf engine: a resume regenerates it
            self._reseed(request_seed(sampling.seed, reqs[0].id))
        # The batch's shared head (the chat template's system turn, a translation request's
        # instructions) is run once, for one row, and its state copied to every row: prefill
        # that every row would repeat. Not cached across batches (CTranslate2 keeps every
        # cached prompt for the model's lifetime); recomputing one row's head is cheap.
        shared = shared_prefix_length(prompt_ids)
        with self._count_lock:
            self.prompt_tokens_run += shared + sum(len(ids) - shared for ids in prompt_ids)
        self.generator.generate_batch(
            [self.tokenizer.convert_ids_to_tokens(ids[shared:]) for ids in prompt_ids],
            static_prompt=self.tokenizer.convert_ids_to_tokens(prompt_ids[0][:shared]) or None,
            cache_static_prompt=False,
            max_length=max(r.max_new_tokens for r in reqs),
            include_prompt_in_result=False,  # the prompt is fed at once into the KV cache
            end_token=self.stop_ids,
            repetition_penalty=sampling.repetition_penalty,
            sampling_topk=1 if greedy else 0,
            sampling_topp=1.0 if greedy else sampling.top_p,
            sampling_temperature=1.0 if greedy else sampling.temperature,
            callback=lambda step: rows[step.batch_id].add(step.token_id),
        )
        return [row.completion() for row in rows]

    def close(self) -> None:
        if self.generator is not None:
            self.generator.unload_model()
            self.generator = None


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """How many leading tokens every prompt shares, leaving each at least one of its own
    (CTranslate2 starts decoding from a row's own tokens)."""
    first, shortest = prompts[0], min(len(p) for p in prompts)
    n = 0
    while n < shortest - 1 and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


class _Row:
    """The tokens of one request as CTranslate2 produces them; says when the row must stop."""

    def __init__(self, tokenizer: Any, req: ChatRequest, stop_ids: list[int]):
        self.tokenizer, self.req, self.stop_ids = tokenizer, req, set(stop_ids)
        self.ids: list[int] = []
        self.ended = False  # end of turn (an EOS token)
        # A stop string spans at most this many tokens (a token is at least one character).
        self.window = max((len(s) for s in req.stop), default=0) + 2

    def add(self, token_id: int) -> bool:
        """Record one token; True ends this row (own cap, end of turn, a stop string, a loop)."""
        if token_id in self.stop_ids:
            self.ended = True
            return True
        self.ids.append(token_id)
        if len(self.ids) >= self.req.max_new_tokens:
            return True
        if ends_in_loop(self.req, self.ids, self.tokenizer.decode):
            return True  # cut off, as if it had run to its cap (completion: finish "length")
        if self.req.stop:
            tail = self.tokenizer.decode(self.ids[-self.window:], skip_special_tokens=True)
            return any(s in tail for s in self.req.stop)
        return False

    def completion(self) -> Completion:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, self.req.stop)
        finish = "stop" if self.ended or stopped else "length"
        return Completion(self.req.id, text, finish, len(self.ids))

