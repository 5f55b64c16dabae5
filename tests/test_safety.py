"""Untrusted files: no pickle loading, safe YAML, remote code off unless asked."""

from __future__ import annotations

import re
from pathlib import Path

from simper.config import load_config

SRC = Path(__file__).resolve().parents[1] / "src" / "simper"


def sources():
    return {path: path.read_text() for path in SRC.rglob("*.py")}


def test_no_unsafe_loaders_in_the_package():
    for path, text in sources().items():
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert "yaml.load(" not in text and "pickle.load" not in text, path
        assert "eval(" not in re.sub(r"\.eval\(|_eval\(|evaluate\(", "", text), path


def test_remote_code_is_off_by_default_and_weights_come_from_safetensors():
    assert load_config().model.trust_remote_code is False
    models = (SRC / "models.py").read_text()
    assert "use_safetensors=True" in models
    assert "trust_remote_code=True" not in "".join(sources().values())
