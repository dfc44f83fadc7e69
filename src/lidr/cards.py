"""Model and dataset cards in the Hugging Face hub's format.

Every model directory a run writes (`iter_<t>/model`) gets a `README.md` model card and every
pairs directory (`iter_<t>/pairs`) a dataset card, so that a directory uploaded as it is
(`hf upload user/name runs/x/iter_2/model`) says what it was trained from, on which
languages and pairs, and how it scored. Cards are built from the run's artifacts only
(config, `_done.json` files, evaluation results): they can be rebuilt at any time, and the
pipeline rewrites them after training and again after evaluation.

A card is documentation of artifacts that already exist: failing to write one must not fail
the run that made them (hours of generation and training), so `write_iteration_cards` logs
its error and returns; the next `lidr run` on the directory writes it again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from lidr import rundir
from lidr.config import BUNDLED_MODEL, RunConfig
from lidr.evaluate.stats import Z95, wilson_interval
from lidr.languages import get_language
from lidr.store import DONE, read_json, write_text_atomic

CARD = "README.md"
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TAGS = ["lidr", "dpo", "multilingual"]
PAIR_COLUMNS = {
    "prompt": "the user turn (chat messages)",
    "chosen": "the preferred assistant turn (chat messages)",
    "rejected": "the rejected assistant turn (chat messages)",
    "prompt_id": "the id aligning one prompt across languages",
    "sample": "which answer to the prompt the pair is made of (0: the first; generation.samples)",
    "language": "the pair's language",
    "via_language": "English pairs: the language whose answer was translated back as the rejected side",
    "chosen_source": "where the chosen text comes from (a response or a self-translation)",
    "rejected_source": "where the rejected text comes from",
    "chosen_origin": "the text the chosen side was translated from, if translated",
    "rejected_origin": "the text the rejected side was translated from, if translated",
    "chosen_finish_reason": "how the generation of the chosen side ended (stop or length)",
    "rejected_finish_reason": "how the generation of the rejected side ended",
    "iteration": "the iteration that built the pair",
}


# ---- what the run started from ---------------------------------------------------------

def base_model_id(spec: str) -> str | None:
    """The hub id of the run's starting model, or None for a local directory."""
    if spec == BUNDLED_MODEL:
        return BUNDLED_HUB_ID
    is_path = spec.startswith((".", "/", "~")) or Path(spec).expanduser().exists() or spec.count("/") != 1
    return None if is_path else spec


def base_license(spec: str, base_dir: Path | None = None) -> str | None:
    """The starting model's license where it says so: the bundled GGUF's metadata, the card
    of a local directory, or a hub card already in the local cache (never the network)."""
    if spec == BUNDLED_MODEL:
        return _gguf_license()
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    card = path / CARD if path.is_dir() else None
    if card is None and base_model_id(spec):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, CARD)
        card = Path(cached) if isinstance(cached, str) else None
    if card is None or not card.is_file():
        return None
    from huggingface_hub import ModelCard

    return ModelCard.load(card).data.license


def _gguf_license() -> str | None:
    import importlib.util

    from gguf import GGUFReader

    from lidr.models import GGUF_FILE, GGUF_PACKAGE

    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    field = GGUFReader(Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE).fields.get("general.license")
    return field.contents() if field is not None else None


def hub_datasets(cfg: RunConfig, up_to: int) -> list[str]:
    """Hub dataset ids the prompts of iterations 1..up_to came from."""
    ids = (src.hub for t in range(1, up_to + 1) for src in cfg.prompts_for(t).sources)
    return sorted({i for i in ids if i})


# ---- evaluation table --------------------------------------------------------------------

def interval(metric: str, value: float, row: dict[str, Any]) -> tuple[float, float] | None:
    """95 % interval of one figure: ±1.96 standard errors where the task gives one (judge win
    rates, lm-eval), else the Wilson interval for a share of n items, else none."""
    se = row.get("standard_error") if metric == "win_rate" else (row.get("stderr") or {}).get(metric)
    if isinstance(se, (int, float)) and math.isfinite(se):
        hi = 100.0 if metric == "win_rate" else math.inf
        return max(0.0, value - Z95 * se), min(hi, value + Z95 * se)
    n = row.get("n")
    if isinstance(n, int) and n > 0 and 0.0 <= value <= 1.0:
        return wilson_interval(round(value * n), n)
    return None


def eval_rows(eval_dir: Path) -> list[list[str]]:
    """[task, metric, language, value, interval, n] for every figure of a model's results."""
    rows = []
    for f in sorted(eval_dir.glob("*.json")):
        result = read_json(f)
        if not (isinstance(result, dict) and "task" in result and isinstance(result.get("languages"), dict)):
            continue  # raw generations and judgments live beside the results
        for lang, row in result["languages"].items():
            for metric, value in row.items():
                if metric in ("n", "standard_error") or isinstance(value, bool) or not isinstance(value, float):
                    continue
                ci = interval(metric, value, row)
                rows.append([result["task"], metric, lang, f"{value:.3f}",
                             f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-", str(row.get("n", "-"))])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


# ---- model card --------------------------------------------------------------------------

def method_text(cfg: RunConfig) -> str:
    names = [get_language(code).name for code in cfg.languages]
    others = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    dominant = get_language(cfg.dominant_language).name
    return (
        f"Trained by Language Imbalance Driven Rewarding (Yang et al., ICLR 2025): the model answered the same "
        f"prompts in {dominant} and in {others}, and translated its own answers; its {dominant} answer translated "
        f"into each language was preferred over its native answer, and its {dominant} answer over the native "
        f"answer translated back. It was then trained on these preference pairs by DPO with an NLL term on the "
        f"chosen answer (TRL's DPOTrainer, `loss_type=[\"sigmoid\", \"sft\"]`), the previous model as reference."
    )


def _settings_rows(cfg: RunConfig, train: dict[str, Any]) -> list[list[str]]:
    tc = cfg.training
    rows = [["beta", tc.beta], ["alpha (NLL weight)", tc.alpha], ["learning rate", tc.learning_rate],
            ["epochs", tc.epochs], ["batch size per device", tc.batch_size],
            ["gradient accumulation", tc.gradient_accumulation_steps], ["processes", train.get("processes", 1)],
            ["max length", tc.max_length], ["scheduler", f"{tc.lr_scheduler}, warm-up {tc.warmup_ratio}"],
            ["precision", tc.precision], ["seed", tc.seed]]
    if tc.lora.enabled:
        rows.append(["LoRA (merged)", f"r {tc.lora.r}, alpha {tc.lora.alpha}"])
    rows += [["pairs", train.get("pairs", 0)], ["optimizer steps", train.get("steps", 0)]]
    history = train.get("history") or []
    if history:
        last = history[-1]
        rows.append(["last logged loss / reward margin", f"{last['loss']:.4f} / {last.get('margin') or 0:.4f}"])
    return [[k, str(v)] for k, v in rows]


def _pair_count_rows(pairs_done: dict[str, Any]) -> list[list[str]]:
    rows = []
    for lang, s in pairs_done.get("languages", {}).items():
        dropped = {**s.get("dropped", {}), **{f"gate {k}": v for k, v in s.get("gates", {}).items()}}
        reasons = ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "-"
        rows.append([lang, str(s.get("kept", 0)), str(sum(dropped.values())), reasons])
    return rows


def _of_iterations(cfg: RunConfig) -> str:
    return f"at most {cfg.max_iterations} (iterations: auto)" if cfg.iterations == "auto" else str(cfg.iterations)


def _done_record(run_dir: Path, t: int, stage: str) -> dict[str, Any]:
    path = rundir.stage_dir(run_dir, t, stage) / DONE
    return read_json(path) if path.is_file() else {}


def model_card(run_dir: Path, cfg: RunConfig, t: int, base_dir: Path | None = None):
    from huggingface_hub import ModelCard, ModelCardData

    train, pairs_done = (_done_record(run_dir, t, stage) for stage in ("train", "pairs"))
    data = ModelCardData(
        base_model=base_model_id(cfg.model), language=cfg.all_languages, license=base_license(cfg.model, base_dir),
        library_name="transformers", pipeline_tag="text-generation", tags=TAGS,
        datasets=hub_datasets(cfg, t) or None,
    )
    parent = cfg.model if t == 1 else f"M{t - 1} of this run (`iter_{t - 1}/model`)"
    lines = [f"# {run_dir.name}: M{t}", "", method_text(cfg), "",
             f"This is **M{t}**, iteration {t} of {_of_iterations(cfg)}, trained from {parent}; "
             f"the run started from `{cfg.model}`.", ""]
    if train and not train.get("pairs"):
        lines += ["No pair survived pairing and the quality gates in this iteration: the weights are "
                  f"those of M{t - 1}.", ""]
    lines += ["## Training", "", *_table(["setting", "value"], _settings_rows(cfg, train)), ""]
    if pairs_done:
        lines += ["## Preference pairs per language", "",
                  *_table(["language", "kept", "dropped", "dropped by reason"], _pair_count_rows(pairs_done)),
                  "", f"The pairs are in `iter_{t}/pairs/` of the run directory, with their own dataset card.", ""]
    rows = eval_rows(rundir.eval_dir(run_dir, t))
    lines += ["## Evaluation", ""]
    if rows:
        lines += [*_table(["task", "metric", "language", "value", "95 % interval", "n"], rows), "",
                  "Intervals: Wilson score for shares of n items; ±1.96 standard errors for judge win rates "
                  "(percent) and lm-eval metrics.", ""]
    else:
        lines += ["Not evaluated yet (the card is rewritten when the evaluation of this model ends).", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


# ---- dataset card ------------------------------------------------------------------------

def pairs_card(run_dir: Path, cfg: RunConfig, t: int):
    import pyarrow.parquet as pq
    from huggingface_hub import DatasetCard, DatasetCardData

    pdir = rundir.stage_dir(run_dir, t, "pairs")
    done = read_json(pdir / DONE)
    parquet = pdir / "pairs.parquet"
    columns = pq.read_schema(parquet).names if parquet.is_file() else []
    data = DatasetCardData(
        language=cfg.all_languages, tags=[*TAGS, "preference"], task_categories=["text-generation"],
        configs=[{"config_name": "default", "data_files": "pairs.parquet"}] if columns else None,
    )
    lines = [f"# {run_dir.name}: preference pairs of iteration {t}", "",
             f"Self-generated preference pairs (TRL's conversational preference format) made by M{t - 1} "
             f"for Language Imbalance Driven Rewarding; {done.get('n', 0)} pairs, quality gates "
             f"{'on' if done.get('gates_enabled') else 'off'}. Load them with "
             "`datasets.Dataset.from_parquet(\"pairs.parquet\")`.", "", "## Columns", ""]
    lines += [f"- `{c}`: {PAIR_COLUMNS.get(c, 'provenance')}" for c in columns] or ["(no pairs)"]
    lines += ["", "## Counts per language", "",
              *_table(["language", "kept", "dropped", "dropped by reason"], _pair_count_rows(done)), "",
              "Pairing drops a pair whose translation failed, with an empty side, or with chosen == rejected; "
              "the `gate` reasons are lidr's quality gates (see the project's README).", ""]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


# ---- writing ---------------------------------------------------------------------------

def write_iteration_cards(run_dir: Path, cfg: RunConfig, t: int, base_dir: Path | None = None,
                          log: Callable[[str], None] = print) -> list[Path]:
    """(Re)write the cards of iteration t that its artifacts allow; never raises."""
    run_dir = Path(run_dir)
    written = []
    targets = [(rundir.stage_dir(run_dir, t, "pairs"), lambda: pairs_card(run_dir, cfg, t), DONE),
               (rundir.model_dir(run_dir, t), lambda: model_card(run_dir, cfg, t, base_dir), "config.json")]
    for folder, build, marker in targets:
        if not (folder / marker).is_file():
            continue
        try:
            # Atomic: the model directory may hold hard links to the previous model's files
            # (an iteration without pairs); a rename replaces the link, never the shared file.
            write_text_atomic(folder / CARD, str(build()))
            written.append(folder / CARD)
        except Exception as e:  # noqa: BLE001 - see the module docstring
            log(f"card for {folder} not written: {type(e).__name__}: {e}")
    return written
