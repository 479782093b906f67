"""Inference precision (issue 18): chosen on purpose, passed to OpenVINO, and reported as the device computes.

The expected precisions come from the CPU's flags in /proc/cpuinfo, read here, not from OpenArc or
OpenVINO: OpenVINO's CPU plugin computes in bf16 by default on CPUs with ``avx512_bf16`` or AMX
(``amx_bf16``), and in f32 elsewhere, whatever the hint asks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ADMIN_KEY, DEMO, EXACT
from helpers import ROOT

from gateway.cli import _parser, build_config

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
FLAGS = set(
    next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    .partition(":")[2]
    .split()
)
HAS_BF16 = bool({"avx512_bf16", "amx_bf16"} & FLAGS)


def model_entry(http, path: str, model: str) -> dict:
    return next(m for m in http.get(path, headers=AUTH).json()["data"] if m["id"] == model)


def test_models_compute_in_f32_on_cpu_unless_configured_and_say_so(http):
    for model in (DEMO, EXACT):
        assert model_entry(http, "/v1/models", model)["inference_precision"] == "f32"
        assert model_entry(http, "/admin/models", model)["inference_precision"] == "f32"
    assert http.get(f"/v1/models/{DEMO}").json()["inference_precision"] == "f32"


def test_bf16_is_what_the_cpu_computes_when_asked_for(http):
    """Asked for bf16, a CPU with bf16 arithmetic computes in bf16; one without it computes in f32, and
    the model says so rather than repeating what was asked."""
    spec = {"id": "demo-bf16", "source": "demo", "inference_precision": "bf16", "warm_up": False}
    loaded = http.post("/admin/models", headers=AUTH, json=spec, timeout=600)
    assert loaded.status_code == 200, loaded.text
    try:
        expected = "bf16" if HAS_BF16 else "f32"
        assert loaded.json()["inference_precision"] == expected
        assert model_entry(http, "/v1/models", "demo-bf16")["inference_precision"] == expected
        question = {"role": "user", "content": "What is the capital of France?"}
        answer = http.post(
            "/v1/chat/completions", json={"model": "demo-bf16", "messages": [question], "max_tokens": 8}
        )
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] > 0
    finally:
        http.delete("/admin/models/demo-bf16", headers=AUTH)


def test_a_precision_and_a_different_hint_among_the_properties_are_a_400(http):
    spec = {
        "id": "two-precisions",
        "source": "demo",
        "inference_precision": "f32",
        "properties": {"INFERENCE_PRECISION_HINT": "bf16"},
    }
    response = http.post("/admin/models", headers=AUTH, json=spec)
    assert response.status_code == 400
    assert (
        "inference_precision 'f32' and properties.INFERENCE_PRECISION_HINT 'bf16' disagree"
        in (response.json()["error"]["message"])
    )
    assert "two-precisions" not in [m["id"] for m in http.get("/admin/models", headers=AUTH).json()["data"]]


def test_unknown_precision_is_a_400(http):
    spec = {"id": "fp8-demo", "source": "demo", "inference_precision": "fp8"}
    response = http.post("/admin/models", headers=AUTH, json=spec)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "inference_precision"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve"], ["auto"]),
        (["serve", "--inference-precision", "bf16"], ["bf16"]),  # the demo model
        (["serve", "--model", "a=demo", "--inference-precision", "f32"], ["f32"]),
    ],
)
def test_the_command_line_sets_the_precision(argv, expected):
    config = build_config(_parser().parse_args(argv))
    assert [model.inference_precision for model in config.models] == expected


def test_devices_command_shows_the_flags_and_both_precisions():
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "devices", "--json"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    listed = set(report["cpu"].partition("flags: ")[2].split())
    assert listed <= FLAGS and ({"avx2", "avx512_bf16", "amx_bf16"} & FLAGS) <= listed
    cpu = next(device for device in report["devices"] if device["device"] == "CPU")
    assert cpu["default_precision"] == ("bf16" if HAS_BF16 else "f32")
    assert cpu["openarc_auto_precision"] == "f32"


def test_the_command_line_precision_against_a_configured_hint_is_one_line(tmp_path):
    config = tmp_path / "openarc.toml"
    config.write_text(
        '[[models]]\nid = "x"\nsource = "demo"\nproperties = { INFERENCE_PRECISION_HINT = "f32" }\n'
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config),
            "--inference-precision",
            "bf16",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "openarc: error: inference_precision 'bf16' and properties.INFERENCE_PRECISION_HINT 'f32' disagree: "
        "set one of them"
    ]
