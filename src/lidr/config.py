"""The run configuration: one pydantic model per section of the YAML file.

Every bad value becomes a `ConfigError` whose message names the key, the value and
what was expected, on one line. Unknown keys are refused (a typo must not silently
fall back to a default).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import yaml
from pydantic import (
    BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, field_validator, model_validator,
)

from lidr.errors import ConfigError  # every bad value here becomes one (lidr/errors.py says why it lives there)
from lidr.languages import get_language
from lidr.text.templates import NOT_A_TEMPLATE, TEMPLATE_PRESETS, has_text_placeholder, is_template

BUNDLED_MODEL = "bundled:smollm2-135m-instruct"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PromptSource(_Section):
    """Where one iteration's aligned prompts come from.

    Exactly one of `path` (a template with `{lang}`), `paths` (one file per language)
    or `hub` (a dataset id; `hub_config` and `split` may contain `{lang}`) is given.
    """

    path: str | None = None
    paths: dict[str, str] | None = None
    hub: str | None = None
    hub_config: str | None = None
    split: str = "train"
    text_key: str = "instruction"
    text_keys: dict[str, str] = Field(default_factory=dict)
    id_key: str | None = "id"
    # Skip the first `offset` prompts: fresh blocks for later iterations from one file.
    offset: int = Field(default=0, ge=0)
    limit: int | None = Field(default=None, ge=1)
    # "math": the prompts are word problems with a final number, so the answer_consistency
    # gate checks that a translated answer keeps the English answer's number.
    task: Literal["instruction", "math"] = "instruction"
    # The answers' token cap for this source's prompts (default generation.max_new_tokens): in a
    # mix, everyday answers need more room than a word problem's.
    max_new_tokens: int | None = Field(default=None, ge=1)
    # Answers per prompt for this source's prompts (default generation.samples): in a mix, the
    # word problems may need several for the agreement gate while an instruction needs one.
    samples: int | None = Field(default=None, ge=1, le=64)

    @model_validator(mode="after")
    def _one_source(self) -> PromptSource:
        given = [k for k in ("path", "paths", "hub") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, paths, hub (got {given or 'none'})")
        if self.path and "{lang}" not in self.path:
            raise ValueError(f"path {self.path!r} must contain {{lang}}; use paths: for one file per language")
        return self

    def text_key_for(self, lang: str) -> str:
        return self.text_keys.get(lang, self.text_key)

    @property
    def sources(self) -> list[PromptSource]:
        return [self]


class PromptMix(_Section):
    """One iteration's prompts from several sources, e.g. word problems and everyday
    instructions in one training block. Each source keeps its own keys, offset, limit and
    `task` (so the answer_consistency gate runs on the math prompts only); a prompt id may
    appear in one source only."""

    mix: list[PromptSource] = Field(min_length=2)

    @property
    def sources(self) -> list[PromptSource]:
        return list(self.mix)


def _block_kind(v: Any) -> str:
    return "mix" if isinstance(v, PromptMix) or (isinstance(v, dict) and "mix" in v) else "source"


# An iteration's prompt block: one source, or `mix:` several. The tag is chosen from the keys,
# so a bad source gets the source's error alone, not one per member of the union.
PromptBlock = Annotated[
    Union[Annotated[PromptSource, Tag("source")], Annotated[PromptMix, Tag("mix")]], Discriminator(_block_kind)]
PROMPT_BLOCK_TAGS = ("source", "mix")


class VLLMOptions(_Section):
    """vLLM's offline engine (`engine: vllm`; needs a CUDA GPU and `pip install 'lidr[vllm]'`)."""

    tensor_parallel_size: int = Field(default=1, ge=1, le=1024)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    max_model_len: int | None = Field(default=None, ge=16)
    enforce_eager: bool = False
    # Any other vllm.LLM argument. Data parallel: run N lidr workers (`--worker i --workers N`),
    # each with its own CUDA_VISIBLE_DEVICES.
    extra_args: dict[str, Any] = Field(default_factory=dict)


class OpenAIOptions(_Section):
    """An OpenAI-compatible server (`engine: openai`): vllm serve, SGLang, TGI, llama.cpp, a hosted API.

    Without `serve_command` the server at `base_url` must already serve the model. With it,
    lidr starts the command for each model it runs (M0, then each new model) with `{model}`
    and `{port}` filled in, waits until `/v1/models` answers, and stops it before training.
    """

    base_url: str | None = Field(default=None, description=(
        "openai: the server's API root (default http://127.0.0.1:8000/v1, or http://127.0.0.1:{port}/v1 "
        "with serve_command)"))
    # The model name sent in requests; default: the path of the model being run (M0, M1, ...).
    model_name: str | None = None
    # Read at run time and never written to disk; None: no key is sent (so no key reaches a
    # server the user did not name it for).
    api_key_env: str | None = Field(default=None, description=(
        "openai: the environment variable holding the API key (default: no key is sent)"))
    concurrency: int = Field(default=8, ge=1, le=4096)
    timeout: float = Field(default=120.0, gt=0.0)
    max_retries: int = Field(default=5, ge=0, le=100)
    backoff: float = Field(default=1.0, ge=0.0, le=600.0)
    # "chat": continue_final_message on /v1/chat/completions (vLLM, SGLang), falling back to
    # /v1/completions when refused; "completions": always format the prompt here.
    prefill_via: Literal["chat", "completions"] = "chat"
    extra_body: dict[str, Any] = Field(default_factory=dict)
    serve_command: str | None = Field(default=None, description=(
        "openai: start this server for each model, e.g. 'vllm serve {model} --port {port}'"))
    serve_start_timeout: float = Field(default=900.0, gt=0.0)

    @model_validator(mode="after")
    def _serve_placeholders(self) -> OpenAIOptions:
        if self.serve_command is not None:
            missing = [p for p in ("{model}", "{port}") if p not in self.serve_command]
            if missing:
                raise ValueError(f"serve_command must contain {' and '.join(missing)} "
                                 f"(got {self.serve_command!r})")
            if self.base_url is not None and "{port}" not in self.base_url:
                raise ValueError(f"with serve_command, base_url must contain {{port}} (got {self.base_url!r})")
        return self

    def url(self, port: int | None = None) -> str:
        if self.base_url is None:
            return f"http://127.0.0.1:{port or 8000}/v1"
        return self.base_url.replace("{port}", str(port)) if port else self.base_url


class CT2Options(_Section):
    """CTranslate2 (`engine: ct2`; under `engine: auto` the default on a CPU without AMX)."""

    # auto: float32 on a CPU (greedy text equal to the hf engine's), float16/bfloat16 on a GPU.
    # int8 is about 1.3x faster on a CPU but changes the text: opt in (benchmarks/RESULTS.md).
    compute_type: Literal["auto", "float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                          "float16", "bfloat16"] = "auto"
    intra_threads: int = Field(default=0, ge=0, le=1024)  # 0: every core this process may use
    # Greedy batches at once, each of batch_size / workers requests on intra_threads / workers
    # cores; sampled batches run one at a time. Opt-in: on 2 cores it was 1.1-1.4x on generation
    # and evaluation but 0.93x on translation (benchmarks/RESULTS.md).
    workers: int = Field(default=1, ge=1, le=64)


# The engine registry: each name is a module lidr/engines/<name>.py with a `build()` (see
# lidr.engines), and its line of `--engine` help. `engine: auto` stands for one of them on
# this machine (lidr.engines.resolve_engine).
ENGINES: dict[str, str] = {
    "hf": "transformers, any device",
    "ct2": "CTranslate2, fast on CPUs",
    "openai": "an OpenAI-compatible server",
    "vllm": "vLLM on a GPU; the vllm extra",
}
EngineName = Literal[("auto", *ENGINES)]


class GenerationConfig(_Section):
    # auto: on a CPU with AMX, hf (bfloat16); on other CPUs ct2 (hf when CTranslate2 is
    # missing); on a GPU, vllm when installed, else hf (lidr.engines.resolve_engine).
    engine: EngineName = "auto"
    ct2: CT2Options = Field(default_factory=CT2Options)
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)
    openai: OpenAIOptions = Field(default_factory=OpenAIOptions)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    max_new_tokens: int = Field(default=256, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.1, gt=0.0, le=5.0)
    batch_size: int = Field(default=16, ge=1, le=4096)
    # hf engine: drop finished rows from a batch every N decode steps, so rows that ended
    # early stop costing compute (0: run each batch to its longest row). Greedy results
    # are unchanged (benchmarks/RESULTS.md).
    evict_every: int = Field(default=32, ge=0, le=32768)
    shard_size: int = Field(default=64, ge=1)
    task_template: str | None = None
    # Answers per prompt and language. The first is drawn as a one-answer run draws it (at
    # `temperature`: greedy by default); the others at `sample_temperature` (None: at
    # `temperature`). Answer k in English and answer k in xx make one pair, as the first ones do.
    samples: int = Field(default=1, ge=1, le=64)
    sample_temperature: float | None = Field(default=None, gt=0.0, le=5.0)

    @model_validator(mode="after")
    def _samples_can_differ(self) -> GenerationConfig:
        if self.samples > 1 and (self.sample_temperature or self.temperature) <= 0:
            raise ValueError(f"samples: {self.samples} greedy answers to one prompt are the same answer; "
                             "set sample_temperature (or temperature) above 0")
        return self

    @field_validator("task_template")
    @classmethod
    def _template_has_prompt(cls, v: str | None) -> str | None:
        # A preset is saved as its text: the run's config.yaml says what the model was asked.
        v = TEMPLATE_PRESETS.get(v, v)
        if v is not None and not has_text_placeholder(v):
            raise ValueError("task_template must contain {prompt} (and may contain {language})")
        return v


class TranslationConfig(_Section):
    # Cap on new tokens per translation: min(max_new_tokens, length_factor x source x the
    # target's token cost relative to the source's, + 16); costs per language in
    # stages/translate.py, measured so the default cuts no human-length translation
    # (benchmarks/RESULTS.md). Translation runs on the generation engine and its batch size.
    max_new_tokens: int = Field(default=512, ge=1, le=32768)
    length_factor: float = Field(default=2.0, gt=0.0, le=20.0)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    # 1.0, as the original: a penalty on prompt tokens punishes copying the source's numbers
    # and names, which is what a faithful translation does.
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=5.0)
    # A translation that ends at EOS without </translated> is kept (the model closed its turn);
    # false counts it as a failure, as the original does (the paper configs).
    accept_unclosed: bool = True
    # Worked examples shown before each translation request (few-shot self-translation): a
    # JSONL file (a path, or bundled:translation_examples/arith.jsonl) whose lines map language
    # codes to aligned texts; each line with both languages of a direction becomes one
    # request-and-answer turn before the real one. None: the paper's zero-shot prompt.
    examples: str | None = None
    # Sampled retries, still self-translation and label-free: each English answer is also
    # translated into every xx `retries` more times at `retry_temperature`, and an xx pair whose
    # greedy translation fails (or a gate drops it) takes the first retry with which it passes
    # every gate. SmolLM2-135M rarely translates a worked answer into French or German greedily;
    # four retries at 0.7 gave 35 French and 21 German pairs per 100 English answers where greedy
    # gave 8 and 0 (docs/EVIDENCE.md). 0: off. Each retry costs one more en>xx translation.
    retries: int = Field(default=0, ge=0, le=16)
    retry_temperature: float = Field(default=0.7, gt=0.0, le=5.0)


class GatesConfig(_Section):
    """The `pairs.gates:` section: the quality gates between translation and training
    (lidr/stages/gates.py says what each gate drops and how its threshold was measured)."""

    enabled: bool = True
    language_id: bool = True
    native_wrong_language: Literal["keep", "drop"] = "keep"
    min_langid_chars: int = Field(default=30, ge=0, le=10_000)  # letters, not characters
    # A checked side too short to identify (under min_langid_chars letters): kept, or dropped.
    unidentified: Literal["keep", "drop"] = "keep"
    # Also identify each line of a checked side that has at least this many letters: a text
    # can pass as French as a whole with an English line in it ("The answer is: 8"), which the
    # model then learns to write. None: the whole text only.
    language_id_lines: int | None = Field(default=None, ge=1, le=10_000)
    degenerate: bool = True
    repeat_ngram_n: int = Field(default=4, ge=1, le=32)
    max_repeat_ngram_share: float = Field(default=0.3, gt=0.0, le=1.0)
    max_looped_share: float = Field(default=0.5, gt=0.0, le=1.0)
    max_repeated_lines: int = Field(default=8, ge=0, le=10_000)
    drop_cut_off: bool = True
    # A pair's rejected side that is the model's own answer (not a translation) cut at the token
    # cap: dropped with its pair, kept, or kept and cut to about the chosen side's length
    # (`trim`). Most such answers are loops, and with them dropped no pair ever prefers an answer
    # over a loop; kept, whole or trimmed, they also shorten the answers (docs/EVIDENCE.md).
    # Chosen sides and translations cut at the cap are dropped either way.
    cut_off_native_rejected: Literal["drop", "keep", "trim"] = "drop"
    length_ratio: tuple[float, float] | None = (0.33, 3.0)
    answer_consistency: bool = True
    # Math with several answers per prompt: keep a pair only when its English answer's final
    # number is given by at least this many of the prompt's English answers (self-consistency,
    # no label). None: off. Needs that many answers per word problem (generation.samples, or its source's samples).
    agreement: int | None = Field(default=None, ge=2, le=64)
    dedupe: bool = True
    translation_requests: bool = True

    @model_validator(mode="after")
    def _ratio_band(self) -> GatesConfig:
        if self.length_ratio is not None:
            lo, hi = self.length_ratio
            if not 0.0 < lo < hi:
                raise ValueError(f"length_ratio must be [low, high] with 0 < low < high (got {[lo, hi]})")
        return self


class PairsConfig(_Section):
    dominant_pairs: bool = True
    # At most this many English pairs per kept pair of the language they came through, after
    # the gates (1.0: as many English pairs via es as es pairs); None keeps them all (the paper).
    dominant_ratio: float | None = Field(default=None, ge=0.0, le=1000.0)
    # After the gates, a second pair for each kept xx pair: the same chosen answer (English in
    # xx) over the English answer itself, so the language is the pair's only difference.
    language_pairs: bool = False
    # A language pair only where its chosen side has at least this share of the English
    # answer's characters: a one-line summary ("El resultado es: 6") of a worked English answer
    # taught as the way to answer in xx opens the everyday answers too (docs/EVIDENCE.md).
    # None: every kept xx pair gets one.
    language_pairs_min_ratio: float | None = Field(default=None, gt=0.0, le=10.0)
    # After the gates, no one opening (an answer's first three words) makes up more than this share
    # of a non-dominant language's chosen sides; pairs over it are dropped (counted under the
    # gate `opening_share`). Self-translations shrink worked answers to one frame ("El resultado
    # es: N"), which training spreads to every answer. None: no cap (the paper).
    max_opening_share: float | None = Field(default=None, gt=0.0, lt=1.0)
    # Quality gates between translation and training (stages/gates.py).
    gates: GatesConfig = Field(default_factory=GatesConfig)
    # Prompts that are themselves translation requests: "copy" pairs the untranslated answers
    # (the answer's language is set by the request, not by the prompt's language), "skip" drops them.
    translation_tasks: Literal["copy", "skip"] = "copy"
    translation_task_ids: str | None = None
    detect_translation_tasks: bool = True


class LoraConfig(_Section):
    """LoRA adapters through PEFT instead of full fine-tuning (`pip install 'lidr[peft]'`).

    The adapter is merged into the weights at the end of each iteration, so the next model
    is a plain model directory that every engine loads. LoRA usually wants a learning rate
    10-100x the full fine-tune's.
    """

    enabled: bool = False
    r: int = Field(default=16, ge=1, le=4096)
    alpha: float = Field(default=32.0, gt=0.0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    # "all-linear" (PEFT's shorthand: every linear layer but the output head) or module names.
    target_modules: str | list[str] = "all-linear"


ACCELERATE_PRESETS = ("single_gpu", "multi_gpu", "deepspeed_zero3", "fsdp2", "cpu_ddp")


class TrainingConfig(_Section):
    beta: float = Field(default=0.1, gt=0.0, le=100.0)
    alpha: float = Field(default=1.0, ge=0.0, le=100.0)
    learning_rate: float = Field(default=5e-7, gt=0.0, le=1.0)
    epochs: float = Field(default=1.0, gt=0.0, le=100.0)
    batch_size: int = Field(default=4, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=4096)
    max_length: int = Field(default=1024, ge=16, le=131072)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    seed: int = 42
    # "auto": bf16 autocast on a GPU that supports it, fp32 elsewhere (pure bf16 weights lose
    # updates at small learning rates, so weights always stay fp32).
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    precompute_ref_log_probs: bool = True
    # false: the rejected side's end-of-turn tokens are left out of DPO's log-ratio (DPO lowers
    # the rejected text, not ending a turn after it; stages/train.py, docs/EVIDENCE.md).
    rejected_end_of_turn: bool = True
    gradient_checkpointing: bool = False
    logging_steps: int = Field(default=1, ge=1)
    # Where training curves and evaluation scalars go (run_dir/tb/ for tensorboard): auto =
    # tensorboard when it is installed, else none. Not compared on resume: it changes no result.
    report_to: Literal["auto", "none", "tensorboard", "wandb", "trackio"] = "auto"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    # Train in a subprocess under `accelerate launch` with this accelerate config: a file, or
    # a shipped one: single_gpu, multi_gpu (DDP), deepspeed_zero3, fsdp2, cpu_ddp (gloo, tests).
    # Unset: train in the run's own process. batch_size is per process.
    accelerate_config: str | None = None
    num_processes: int | None = Field(default=None, ge=1, le=65536)  # overrides the accelerate config's


class EvalTask(_Section):
    """What every evaluation task has. Each kind is a subclass (one per `task:` value, a
    member of `EvalTaskConfig`) with its own fields, the metrics a stopping rule may read,
    and its own checks; its runner is `lidr.evaluate.tasks.<task>`."""

    task: str
    # The result's name (iter_<t>/eval/<label>.json); default: the task. Two tasks of one kind
    # (x_alpacaeval against references and against M0) need distinct labels.
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: list[str] = Field(default_factory=list, description=(
        "data file(s): paths with {lang}, or files named by language (mgsm_es.jsonl); several files of "
        "one language are read as one split (item ids unique across them)"))
    languages: list[str] | None = Field(default=None, description="language codes (default: the run's languages)")
    limit: int | None = Field(default=None, ge=1, description="the first N items per language")
    max_new_tokens: int = Field(default=256, ge=1, le=32768, description="new tokens per answer at most")
    batch_size: int = Field(default=16, ge=1, le=4096, description="requests per engine batch")

    # The metrics a stopping rule may read; None: known only once the task ran.
    metrics: ClassVar[tuple[str, ...] | None] = None
    needs_data: ClassVar[bool] = True

    @model_validator(mode="after")
    def _needs(self) -> EvalTask:
        if self.needs_data and not self.data:
            raise ValueError(f"task {self.task} needs data")
        self.check_fields()
        for code in self.languages or []:
            get_language(code)
        return self

    def check_fields(self) -> None:
        """A kind's own checks: raise ValueError with a one-line message."""

    @property
    def name(self) -> str:
        return self.label or self.task

    @property
    def m0_is_baseline(self) -> bool:
        """Whether M0 only writes what later models are measured against (no M0 result)."""
        return False


class MgsmTask(EvalTask):
    task: Literal["mgsm"] = "mgsm"
    template: str = Field(default="mgsm", description=(
        "mgsm: a preset (mgsm, paper_math) or a template with {prompt} (or {question}) and optionally {language}"))

    metrics: ClassVar[tuple[str, ...] | None] = ("accuracy", "accuracy_in_language", "accuracy_no_echo",
                                                 "accuracy_no_loop", "off_target", "off_target_identified",
                                                 "unidentified", "degenerate")

    @field_validator("template")
    @classmethod
    def _known_template(cls, v: str) -> str:
        if not is_template(v):
            raise ValueError(NOT_A_TEMPLATE)
        return v  # kept as written, not as the preset's text: the result names the preset


class FidelityTask(EvalTask):
    task: Literal["fidelity"] = "fidelity"

    metrics: ClassVar[tuple[str, ...] | None] = ("fidelity", "degenerate", "same_opening")


class XAlpacaEvalTask(EvalTask):
    task: Literal["x_alpacaeval"] = "x_alpacaeval"
    judge: str | None = Field(default=None, description=(
        "x_alpacaeval: the judge model (path, hub id, or a served model's name)"))
    # `judge_openai` replaces generation.openai for the judge (a hosted API, its own key).
    judge_engine: EngineName | None = Field(default=None, description=(
        "x_alpacaeval: the judge's engine (default: the run's generation engine)"))
    judge_openai: OpenAIOptions | None = None
    baseline: str | None = Field(default=None, description=(
        "x_alpacaeval: outputs to compare against, model_outputs.json per language ({lang} template), "
        "or M0 for head-to-head against the run's starting model"))

    metrics: ClassVar[tuple[str, ...] | None] = ("win_rate",)

    def check_fields(self) -> None:
        if not (self.judge and self.baseline):
            raise ValueError("task x_alpacaeval needs judge and baseline")

    @property
    def m0_is_baseline(self) -> bool:
        return self.baseline == "M0"


class LmEvalTask(EvalTask):
    task: Literal["lm_eval"] = "lm_eval"
    families: list[str] = Field(default_factory=list, description="lm_eval: task families (m_mmlu, arc, ...)")

    metrics: ClassVar[tuple[str, ...] | None] = None  # they depend on the families
    needs_data: ClassVar[bool] = False

    def check_fields(self) -> None:
        if not self.families:
            raise ValueError("task lm_eval needs families")


# One evaluation task, of the kind its `task:` names. A new kind is a subclass above and a
# member here, plus its runner lidr/evaluate/tasks/<task>.py.
EvalTaskConfig = Annotated[Union[MgsmTask, FidelityTask, XAlpacaEvalTask, LmEvalTask], Field(discriminator="task")]
EVAL_TASK_CLASSES: dict[str, type[EvalTask]] = {
    cls.model_fields["task"].default: cls for cls in get_args(get_args(EvalTaskConfig)[0])}
EVAL_TASKS = tuple(EVAL_TASK_CLASSES)
_EVAL_TASK_ADAPTER = TypeAdapter(EvalTaskConfig)

# Before each kind had its own fields, every task carried all of them, and a run's config.yaml
# saved them all: `template: mgsm, judge: null, ..., families: []` on an mgsm task. Those
# files must still parse and resume, so another kind's field holding the default it had then
# is dropped; one with any other value is kept, and refused as an unknown key.
_FLAT_SHAPE_DEFAULTS: dict[str, Any] = {"template": "mgsm", "judge": None, "judge_engine": None,
                                        "judge_openai": None, "baseline": None, "families": []}


def _task_in_current_shape(task: Any) -> Any:
    """An evaluation task's dict without the flat shape's other-kind fields at their defaults."""
    if not isinstance(task, dict) or task.get("task") not in EVAL_TASK_CLASSES:
        return task
    own = EVAL_TASK_CLASSES[task["task"]].model_fields
    return {k: v for k, v in task.items()
            if k in own or k not in _FLAT_SHAPE_DEFAULTS or v != _FLAT_SHAPE_DEFAULTS[k]}


def in_current_shape(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict (a saved config.yaml) with its evaluation tasks in today's shape."""
    evaluation = data.get("evaluation")
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("tasks"), list):
        return data
    tasks = [_task_in_current_shape(t) for t in evaluation["tasks"]]
    return {**data, "evaluation": {**evaluation, "tasks": tasks}}


def parse_eval_task(data: dict[str, Any]) -> EvalTask:
    """One evaluation task from a dict (`lidr eval`'s options); raises ValidationError."""
    return _EVAL_TASK_ADAPTER.validate_python(_task_in_current_shape(data))


class EvaluationConfig(_Section):
    tasks: list[EvalTaskConfig] = Field(default_factory=list)

    @field_validator("tasks", mode="before")
    @classmethod
    def _current_shape(cls, v: Any) -> Any:
        return [_task_in_current_shape(t) for t in v] if isinstance(v, list) else v

    @field_validator("tasks")
    @classmethod
    def _distinct_names(cls, v: list[EvalTask]) -> list[EvalTask]:
        names = [t.name for t in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two tasks are named {twice[0]!r}; give each task of one kind its own label")
        return v


class StoppingGuard(_Section):
    """What the run must not lose on the way: after M(t) is evaluated, `metric` on the task
    labelled `task` may be worse than M0's by at most `max_loss` (in the metric's own units) in
    every non-dominant language; beyond it in any one the run stops, and M(t) is not the final
    model. E.g. a chat dev set's `same_opening` or `fidelity` while the gain is read on word problems."""

    task: str
    metric: str
    max_loss: float = Field(ge=0)


class StoppingConfig(_Section):
    """When `iterations: auto` stops (lidr/stopping.py): after M(t) is evaluated, the gain is the
    change of `metric` on the evaluation task labelled `task`, from M(t-1) to M(t), in the mean
    over the non-dominant languages; below `min_gain` (in the metric's own units) the run stops.
    It stops too when a guard's metric has become worse than M0's by more than its max_loss in a language."""

    task: str  # the label (or task name) of one of evaluation.tasks, e.g. a dev set
    metric: str = "accuracy"  # off_target, degenerate and same_opening count lower as better
    min_gain: float = 0.01
    guards: list[StoppingGuard] = []


def check_stopping(cfg: RunConfig) -> None:
    """`iterations: auto` needs a stopping rule on an evaluation task that M0 has a result for."""
    if cfg.iterations != "auto":
        for key in ("max_iterations", "stopping"):
            if getattr(cfg, key) is not None:
                raise ValueError(f"{key} is only read with iterations: auto (got iterations: {cfg.iterations})")
        return
    stop = cfg.stopping
    if stop is None:
        raise ValueError("iterations: auto needs a stopping section naming the evaluation task that decides "
                         "(stopping.task: one of evaluation.tasks' labels)")
    _check_rule_task(cfg, "stopping", stop.task, stop.metric)
    for i, guard in enumerate(stop.guards):
        _check_rule_task(cfg, f"stopping.guards.{i}", guard.task, guard.metric)


def _check_rule_task(cfg: RunConfig, where: str, label: str, metric: str) -> None:
    """A stopping rule reads `metric` of the task labelled `label`, on M0 and every later model."""
    names = [t.name for t in cfg.evaluation.tasks]
    if label not in names:
        raise ValueError(f"{where}.task {label!r} is not an evaluation task's label "
                         f"(evaluation.tasks: {', '.join(names) or 'none'})")
    task = cfg.evaluation.tasks[names.index(label)]
    known = task.metrics
    if known is not None and metric not in known:
        raise ValueError(f"{where}.metric {metric!r} is not a {task.task} metric (expected one of "
                         f"{', '.join(known)})")
    if task.m0_is_baseline:
        raise ValueError(f"{where}.task {label!r} is a head-to-head against M0, which has no M0 result "
                         "to measure the first gain from; name a task with an absolute score")
    if task.languages is not None and not set(task.languages) & set(cfg.languages):
        raise ValueError(f"{where}.task {label!r} covers none of the non-dominant languages "
                         f"{cfg.languages} (its languages: {task.languages})")


# Keys of the sections one iteration may change (`per_iteration`) that are read once per run,
# before any iteration, and so cannot differ by iteration.
RUN_LEVEL_KEYS = ("translation.examples", "pairs.translation_task_ids", "training.report_to",
                  "training.accelerate_config")


class IterationSettings(_Section):
    """`per_iteration.T:` the settings of iteration T's translation, pairs and training that
    differ from the run's, e.g. a gate only the second iteration needs. Partial sections: a
    key not given keeps the run's value."""

    translation: dict[str, Any] | None = None
    pairs: dict[str, Any] | None = None
    training: dict[str, Any] | None = None

    def settings(self) -> dict[str, Any]:
        """What it sets, as dotted keys."""
        return _flat(self.model_dump(exclude_none=True))


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on `base`, mapping into mapping; any other value replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def iteration_view(data: dict[str, Any], t: int) -> dict[str, Any]:
    """A config dict as iteration t's stages read it: its `per_iteration` entry for t (saved
    configs key it "2", configs in YAML 2) merged over the run's sections, and no
    `per_iteration` left."""
    table = data.get("per_iteration") or {}
    over = table.get(t) or table.get(str(t)) or {}
    view = {k: v for k, v in data.items() if k != "per_iteration"}
    for section, values in over.items():
        if values:
            view[section] = _merged(view.get(section) or {}, values)
    return view


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: {"pairs.gates.cut_off_native_rejected": "keep"}."""
    flat: dict[str, Any] = {}
    for k, v in values.items():
        flat.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return flat


class RunConfig(_Section):
    name: str | None = None
    model: str = BUNDLED_MODEL
    dominant_language: str = "en"
    languages: list[str] = Field(default_factory=lambda: ["es", "fr", "de"], min_length=1)
    # An int, or "auto": evaluate each new model and stop when gains saturate (`stopping`),
    # after at most max_iterations (default 5).
    iterations: int | Literal["auto"] = 2
    max_iterations: int | None = Field(default=None, ge=1, le=100)
    stopping: StoppingConfig | None = None
    seed: int = 0
    limit: int | None = Field(default=None, ge=1)
    prompts: list[PromptBlock] = Field(min_length=1)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    translation: TranslationConfig = Field(default_factory=TranslationConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    # Iteration number -> the translation, pairs or training settings that iteration changes
    # (`IterationSettings`); every other iteration runs with the sections above.
    per_iteration: dict[int, IterationSettings] = Field(default_factory=dict)

    @field_validator("iterations", mode="before")
    @classmethod
    def _iterations(cls, v: Any) -> Any:
        # One message instead of one per member of the union.
        if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100):
            raise ValueError("expected a whole number from 1 to 100, or auto")
        return v

    @field_validator("dominant_language")
    @classmethod
    def _known_dominant(cls, v: str) -> str:
        get_language(v)
        return v

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, v: list[str]) -> list[str]:
        for code in v:
            get_language(code)
        if len(set(v)) != len(v):
            raise ValueError(f"languages repeat a code: {v}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_max_iterations(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("iterations") == "auto" and data.get("max_iterations") is None:
            return {**data, "max_iterations": 5}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        check_stopping(self)
        if self.dominant_language in self.languages:
            raise ValueError(
                f"languages lists the dominant language {self.dominant_language!r}; list only the others"
            )
        if len(self.prompts) not in (1, self.last_iteration):
            auto = self.iterations == "auto"
            what = f"max_iterations {self.last_iteration}" if auto else f"{self.iterations} iterations"
            raise ValueError(
                f"prompts has {len(self.prompts)} blocks for {what}; "
                "give one block (used by every iteration) or one per iteration"
            )
        openai = self.generation.openai
        serves_many = self.last_iteration > 1 or bool(self.evaluation.tasks)  # M1 is generated or evaluated
        if self.generation.engine == "openai" and openai.model_name and not openai.serve_command and serves_many:
            raise ValueError(
                f"generation.openai.model_name {openai.model_name!r} without serve_command names one served "
                "model, but this run generates or evaluates M0, M1, ...; unset model_name (requests then "
                "name each model's path) or set serve_command (a server per model)"
            )
        self._check_samples()
        self._check_per_iteration()
        for i, block in enumerate(self.prompts):
            for j, src in enumerate(block.sources):
                where = f"prompts[{i}]" + (f".mix[{j}]" if isinstance(block, PromptMix) else "")
                if src.paths is not None:
                    missing = [c for c in self.all_languages if c not in src.paths]
                    if missing:
                        raise ValueError(f"{where}.paths has no file for {missing}")
        return self

    def _check_samples(self) -> None:
        """Several answers to a prompt must be able to differ, and the agreement gate needs at
        least `agreement` answers to each word problem it checks."""
        g, agreement = self.generation, self.pairs.gates.agreement
        gated = self.pairs.gates.enabled and agreement is not None
        # The gate checks word problems only; with none, every source is held to it.
        any_math = any(src.task == "math" for b in self.prompts for src in b.sources)
        for i, block in enumerate(self.prompts):
            for j, src in enumerate(block.sources):
                where = f"prompts.{i}" + (f".mix.{j}" if isinstance(block, PromptMix) else "")
                n = src.samples or g.samples
                if src.samples and n > 1 and (g.sample_temperature or g.temperature) <= 0:
                    raise ValueError(f"{where}.samples: {n} greedy answers to one prompt are the same answer; "
                                     "set generation.sample_temperature (or temperature) above 0")
                if gated and (src.task == "math" or not any_math) and agreement > n:
                    key = f"{where}.samples" if src.samples else "generation.samples"
                    raise ValueError(f"pairs.gates.agreement {agreement} counts the answers to one prompt that "
                                     f"agree, but {key} is {n}; set samples to at least {agreement}")

    def _check_per_iteration(self) -> None:
        for t, over in self.per_iteration.items():
            where = f"per_iteration.{t}"
            if not 1 <= t <= self.last_iteration:
                raise ValueError(f"{where}: this run has iterations 1 to {self.last_iteration}")
            fixed = [k for k in over.settings() if k in RUN_LEVEL_KEYS]
            if fixed:
                raise ValueError(f"{where}.{fixed[0]}: read once for the whole run; set it at the top level")
            try:
                self.at_iteration(t)
            except ValidationError as err:
                raise ValueError("; ".join(f"{where}.{m}" for m in _error_messages(err))) from None

    def at_iteration(self, t: int) -> RunConfig:
        """The config iteration t's stages run with: the run's, with `per_iteration[t]` over it."""
        if t not in self.per_iteration:
            return self
        return RunConfig.model_validate(iteration_view(self.model_dump(mode="json"), t))

    @property
    def max_samples(self) -> int:
        """The most answers any prompt gets (1: a one-answer run)."""
        return max(src.samples or self.generation.samples for b in self.prompts for src in b.sources)

    @property
    def all_languages(self) -> list[str]:
        return [self.dominant_language, *self.languages]

    @property
    def last_iteration(self) -> int:
        """The number of iterations, or under `iterations: auto` the most there may be."""
        return self.max_iterations if self.iterations == "auto" else self.iterations

    def prompts_for(self, iteration: int) -> PromptSource | PromptMix:
        return self.prompts[0] if len(self.prompts) == 1 else self.prompts[iteration - 1]


def _error_key(loc: tuple[Any, ...]) -> str:
    """The dotted key of an error. A tagged union puts the member's tag into the location
    (evaluation.tasks.0.mgsm.label, prompts.0.source.path); the task's `task:` key or the
    block's own keys already say it, so it is left out."""
    tags = (*EVAL_TASK_CLASSES, *PROMPT_BLOCK_TAGS)
    parts = [p for i, p in enumerate(loc) if not (p in tags and (i == 0 or isinstance(loc[i - 1], int)))]
    return ".".join(str(p) for p in parts)


def _format_error(err: ValidationError, source: str) -> str:
    return f"invalid config {source}: " + "; ".join(_error_messages(err))


def _error_messages(err: ValidationError) -> list[str]:
    """One "key: what is wrong" per error."""
    parts = []
    for e in err.errors():
        key = _error_key(e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] in ("union_tag_invalid", "union_tag_not_found"):  # the `task:` of an evaluation task
            key = f"{key}.task" if key != "(top level)" else "task"
            got = f" (got {e['ctx']['tag']!r})" if e["type"] == "union_tag_invalid" else " (missing)"
            msg = f"expected one of the task kinds {', '.join(EVAL_TASKS)}{got}"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        parts.append(f"{key}: {msg}")
    return parts


def parse_config(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` settings from the command line over a config's data (a copy; `data` is kept).

    KEY is a dotted path (`training.seed`, `pairs.gates.agreement`, `evaluation.tasks.0.limit`:
    a number indexes a list); VALUE is read as YAML (`43`, `true`, `null`, `[es, fr]`). A
    missing mapping on the way is made, so `training.lora.enabled=true` works on a config
    without `training:`; whether the key exists is then checked with the rest of the config.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted KEY, e.g. training.seed=43")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth]) or "the config"
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {item!r}: {where} is a list of {len(node)}; "
                                      f"{part!r} is not an index in it")
                part = int(part)
            elif not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {where} is a {type(node).__name__}, not a mapping")
            elif part.isdigit() and part not in node and int(part) in node:
                part = int(part)  # YAML's `per_iteration: {2: ...}` keys are numbers
            if last:
                node[part] = value
            else:
                if isinstance(node, dict) and node.get(part) is None:
                    node[part] = {}
                node = node[part]  # a list item, or the mapping just made
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> tuple[RunConfig, Path]:
    """Read a YAML config; returns it with the directory that relative paths are resolved against.

    `overrides` are `--set KEY=VALUE` settings, applied before the config is checked.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        # PyYAML's own words and position: "line 3, column 7: mapping values are not allowed here".
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config {path} is not valid YAML{where}: {what}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of keys, got {type(data).__name__}")
    source = str(path) + (f" with --set {' '.join(overrides)}" if overrides else "")
    return parse_config(apply_overrides(data, overrides or []), source), path.resolve().parent


def demo_config(limit: int | None = None, iterations: int = 2) -> RunConfig:
    """The embedded default run: bundled SmolLM2 on the bundled easy arithmetic family, sized
    to finish within 15 minutes on a 2-core CPU without bf16 (README quotes the measured time).

    `limit` shrinks the prompts per language and the held-out evaluation alike.
    """
    # One fresh block of word problems per iteration; later iterations reuse them in turn.
    blocks = [{"path": f"bundled:arith/train_{i}/{{lang}}.jsonl", "text_key": "question", "task": "math",
               "limit": 24} for i in (1, 2)]
    data = {
        "name": "demo",
        "model": BUNDLED_MODEL,
        "languages": ["es", "fr", "de"],
        "iterations": iterations,
        "limit": limit,
        "prompts": [blocks[i % 2] for i in range(iterations)],
        # The question alone as the user turn, greedy, no repetition penalty: a penalty on the
        # prompt's tokens punishes repeating the question's numbers, which a worked answer does.
        "generation": {"max_new_tokens": 128, "repetition_penalty": 1.0, "batch_size": 64, "shard_size": 64},
        "translation": {"max_new_tokens": 256},
        "training": {"learning_rate": 5e-6, "batch_size": 4, "epochs": 1, "max_length": 384},
        # The held-out test split of the family (templates disjoint from the training ones):
        # accuracy and off-target, with intervals and paired tests, for M0, M1, M2.
        "evaluation": {"tasks": [{"task": "mgsm", "label": "arith_test",
                                  "data": ["bundled:arith/test/{lang}.jsonl"], "template": "{question}",
                                  "limit": min(30, limit or 30), "max_new_tokens": 128, "batch_size": 64}]},
    }
    return parse_config(data, "demo")


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


# Settings that change no artifact of a run: a resumed run may change them.
UNCOMPARED_KEYS = {"training.report_to"}


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict in today's shape with every key, the absent ones at their defaults.

    A new option's default is what lidr did before it existed (generation.samples: 1), so a
    saved config without the key ran with that value. A dict that does not parse is
    returned as written, and compared key by key."""
    data = in_current_shape(data)
    try:
        return RunConfig.model_validate(data).model_dump(mode="json")
    except ValidationError:
        return data


def diff_configs(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    if not prefix:
        # A config.yaml saved before the evaluation task kinds had their own fields holds the
        # same config in the flat shape, and one saved before an option existed lacks its key:
        # compare both in today's shape with today's defaults, so a run saved then resumes
        # (and `lidr report A B` names no key that differs only in shape).
        old, new = with_defaults(old), with_defaults(new)
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        name = f"{prefix}{k}"
        if name in UNCOMPARED_KEYS:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys += diff_configs(a, b, name + ".")
        elif a != b:
            keys.append(name)
    return keys
