"""`openarc serve` refuses bad set-ups with one actionable line, before loading anything heavy."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT


def serve(*args: str, tmp_path=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gateway.cli", "serve", "--port", "1", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "/nonexistent/model-folder"], "model path /nonexistent/model-folder does not exist"),
        (["--device", "GPU"], "device 'GPU' is not available on this machine"),
        (["--device", "NPU"], "device 'NPU' is not available on this machine"),
        (["--config", "/nonexistent.toml"], "cannot read config file /nonexistent.toml"),
    ],
)
def test_bad_setup_is_one_line(args, expected):
    result = serve(*args)
    assert result.returncode == 2
    # On a fresh machine the demo model is fetched first, and that is logged: the error itself is one line.
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line and line.strip()]
    assert len(errors) == 1 and errors[0].startswith("openarc: error:") and expected in errors[0], (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_unknown_config_key_is_one_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[models]]\nid = "x"\nsource = "demo"\ndevise = "CPU"\n')
    result = serve("--config", str(config))
    assert result.returncode == 2
    assert "Object contains unknown field `devise`" in result.stderr.strip()
    assert len(result.stderr.strip().splitlines()) == 1


def test_folder_that_is_not_a_model(tmp_path):
    result = serve("--model", f"mine={tmp_path}")
    assert result.returncode == 2
    assert "is not an OpenVINO IR folder or a .gguf file" in result.stderr
