"""Shared fixtures: everything offline, on a tiny Llama and a tokenizer trained in-process."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama + BPE tokenizer with BOS and a ChatML template, written once per session."""
    from simper.models import build_tiny_random_llama

    folder = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_random_llama(folder)
    return folder


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    from simper.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test gets its own cache and fresh accelerate singletons."""
    monkeypatch.setenv("SIMPER_CACHE", str(tmp_path / "cache"))
    yield
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
