"""Stage 4, DPO + NLL training of M(t+1) from Mt, with Mt as the reference model.

    L = -log σ(β·Δ_chosen − β·Δ_rejected) − α · NLL(chosen)

through TRL's DPOTrainer with `loss_type=["sigmoid", "sft"]` and `loss_weights=[1, α]`.
TRL's sft term is the mean negative log-likelihood over all chosen completion tokens of
a micro-batch (a token-level mean), where the paper writes a per-sequence
`log π(yw|x) / |yw|` averaged over sequences; the two agree when chosen answers have
equal lengths and otherwise weight long answers a little more.

Reference log-probs are computed once before training (`precompute_ref_log_probs`), so
no second copy of the model is held during training; this is exact because the
reference model is frozen for the whole stage and evaluated without dropout. It is not
valid for methods that move the reference during training (TR-DPO's `sync_ref_model`),
which lidr does not use; turn it off only to trade memory for the one-off pass.

With `lora.enabled` the trained weights are PEFT adapters; the reference is the same
network with the adapters disabled (TRL's way, so no copy either), and the adapters are
merged into a plain model directory at the end, which the next iteration loads.

With `rejected_end_of_turn: false` the tokens that close the rejected answer's turn (the chat
template's end-of-turn, `<|im_end|>\n` for ChatML) are left out of the rejected side, so DPO
lowers the likelihood of the rejected answer's text without lowering the likelihood of ending a
turn after it. The rejected sides of a later iteration are the model's own short answers, closed
by that token; with it in the log-ratio, the model measured in docs/EVIDENCE.md stopped ending its
turn after such answers and looped. The chosen side and its NLL term keep the end of turn.

The function runs the same in one process or in each rank under `accelerate launch`
(see `train_launch.py`): saving is collective, and only the main process writes files.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from lidr import tracking
from lidr.config import ConfigError, TrainingConfig

PAIR_COLUMNS = ["prompt", "chosen", "rejected"]


def _precision(cfg: TrainingConfig, on_gpu: bool) -> bool:
    """True for bf16 autocast. Weights stay fp32: pure bf16 weights lose small updates."""
    import torch

    if cfg.precision == "bf16":
        return True
    return cfg.precision == "auto" and on_gpu and torch.cuda.is_bf16_supported()


def dpo_config(cfg: TrainingConfig, output_dir: Path, n_pairs: int, run_name: str | None = None,
               log_dir: Path | None = None):
    import torch
    from trl import DPOConfig

    on_gpu = torch.cuda.is_available()
    return DPOConfig(
        output_dir=str(output_dir),
        beta=cfg.beta,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, cfg.alpha],
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        optim="adamw_torch",
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=_precision(cfg, on_gpu),
        use_cpu=not on_gpu,
        gradient_checkpointing=cfg.gradient_checkpointing,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        precompute_ref_batch_size=cfg.batch_size,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        **tracking.trainer_args(cfg.report_to, run_name, log_dir),
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def lora_config(cfg: TrainingConfig):
    """PEFT's LoraConfig from ours, or None when LoRA is off."""
    if not cfg.lora.enabled:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise ConfigError("training.lora needs PEFT: pip install 'lidr[peft]'") from None
    lc = cfg.lora
    return LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
                      task_type="CAUSAL_LM")


def end_of_turn_ids(tokenizer) -> list[int]:
    """The token ids the chat template closes an assistant turn with (after its content)."""
    probe = "lidr end-of-turn probe"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": probe}], tokenize=False)
    suffix = text[text.rindex(probe) + len(probe):]
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    return ids or [tokenizer.eos_token_id]


def without_suffix(ids: list[int], suffix: list[int]) -> list[int]:
    """`ids` without a trailing `suffix`; unchanged when they do not end with it (cut by max_length)."""
    return ids[: len(ids) - len(suffix)] if suffix and ids[-len(suffix):] == suffix else ids


def _trainer_class(cfg: TrainingConfig):
    """TRL's DPOTrainer, or (`rejected_end_of_turn: false`) one whose tokenized rejected sides
    end on their last content token. The ids are changed after TRL's own tokenization and
    before its reference log-probs, so policy and reference see the same sequences.
    `_prepare_dataset` is where TRL (pinned, 1.16) tokenizes the pairs; its test checks the result."""
    from trl import DPOTrainer

    if cfg.rejected_end_of_turn:
        return DPOTrainer

    class DPOTrainerOpenRejected(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            suffix = end_of_turn_ids(getattr(processing_class, "tokenizer", processing_class))
            return dataset.map(lambda ex: {"rejected_ids": without_suffix(ex["rejected_ids"], suffix)},
                               desc=f"Leaving the end of turn out of {dataset_name}'s rejected sides")

    return DPOTrainerOpenRejected


def load_pairs(pairs_file: Path):
    from datasets import Dataset

    return Dataset.from_parquet(str(pairs_file)).select_columns(PAIR_COLUMNS)


def _log_callback(log: Callable[[str], None]):
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        """One short line per logged step instead of the trainer's raw dicts."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                log(f"train step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}, "
                    f"reward margin {logs.get('rewards/margins', float('nan')):.4f}")

    return StepLog()


def train_dpo(
    model_dir: str, pairs_file: Path, out_dir: Path, cfg: TrainingConfig, work_dir: Path,
    log: Callable[[str], None] = print, log_dir: Path | None = None, run_name: str | None = None,
) -> dict[str, Any]:
    """Train on the pairs in `pairs_file`; save the new model as a plain directory `out_dir`.

    `log_dir` is where TensorBoard curves go (with `report_to` tensorboard), `run_name`
    names the run in wandb / trackio. Returns the training summary (loss and reward margin
    per logged step).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback

    t0 = time.perf_counter()
    dataset = load_pairs(pairs_file)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with tracking.tensorboard_dir(log_dir):
        trainer = _trainer_class(cfg)(
            model=model,
            args=dpo_config(cfg, work_dir, len(dataset), run_name, log_dir),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[_log_callback(log)],
            peft_config=lora_config(cfg),
        )
    trainer.remove_callback(PrinterCallback)
    t_train = time.perf_counter()
    trainer.train()  # includes the one-off reference log-prob pass
    train_seconds = time.perf_counter() - t_train
    _save_atomic(trainer, tokenizer, model_dir, out_dir, merge_lora=cfg.lora.enabled)
    if trainer.accelerator.is_main_process:
        shutil.rmtree(work_dir, ignore_errors=True)
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "pairs": len(dataset),
        "steps": trainer.state.global_step,
        "seconds": round(time.perf_counter() - t0, 3),
        "train_seconds": round(train_seconds, 3),
        "history": [
            {"step": h["step"], "loss": h["loss"], "margin": h.get("rewards/margins"),
             "accuracy": h.get("rewards/accuracies"), "lr": h.get("learning_rate"),
             # the policy's mean sequence log-probs: at step 1 M(t)'s, what DPO compares
             "logps_chosen": h.get("logps/chosen"), "logps_rejected": h.get("logps/rejected")}
            for h in history
        ],
    }


def _save_atomic(trainer, tokenizer, model_dir: str, out_dir: Path, merge_lora: bool) -> None:
    """Write the new model to a temporary directory and rename it, on the main process.

    `save_model` is called on every rank: under FSDP or ZeRO-3 it gathers the shards. A LoRA
    run saves its adapters, which the main process merges into the starting weights.
    """
    acc = trainer.accelerator
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    saved = tmp.with_name(tmp.name + ".adapter") if merge_lora else tmp
    trainer.save_model(str(saved))
    if acc.is_main_process:
        if merge_lora:
            _merge_adapter(model_dir, saved, tmp)
        tokenizer.save_pretrained(str(tmp))
        replace_dir(tmp, out_dir)
    acc.wait_for_everyone()


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Put `tmp` in place of `out_dir`; an old `out_dir` is the output of a training stage
    that was killed before it was marked done, so it is removed first."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def _merge_adapter(model_dir: str, adapter_dir: Path, out: Path) -> None:
    """Starting weights + trained LoRA adapter -> one plain model directory."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out))
    shutil.rmtree(adapter_dir, ignore_errors=True)


def copy_model(model_dir: str, out_dir: Path) -> None:
    """The next model when there is nothing to train on: the same weights (hard links)."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(model_dir, tmp, copy_function=os.link)
    except OSError:  # another filesystem: hard links impossible
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model_dir, tmp)
    replace_dir(tmp, out_dir)
