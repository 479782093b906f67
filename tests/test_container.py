"""The serving image, as far as this machine can build it: no container daemon and no base images here,
so the test takes exactly the files the Containerfile's COPY lines copy, installs them into a fresh
virtual environment the way its RUN line does, and runs its entry command until /health answers."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import venv
from pathlib import Path

import httpx
import pytest
from helpers import ROOT

from gateway.harness import free_port

CONTAINERFILE = ROOT / "Containerfile"


def instructions(name: str, stage: str = "serve") -> list[str]:
    """The arguments of every ``name`` instruction of one stage of the Containerfile (continuation
    lines joined); the serving stage by default."""
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    stages = {}
    for block in text.split("\nFROM ")[1:]:
        header, _, body = block.partition("\n")
        stages[header.split()[-1]] = body
    lines = stages[stage].splitlines()
    return [line.split(None, 1)[1] for line in lines if line.split(None, 1)[:1] == [name]]


def test_serving_image_is_the_default_target():
    """``podman build`` without --target builds the last stage: it must be the serving image."""
    last = [line for line in CONTAINERFILE.read_text().splitlines() if line.startswith("FROM ")][-1]
    assert last.split()[-1] == "serve"


def test_export_image_installs_the_export_extra():
    (run,) = [r for r in instructions("RUN", "export") if "pip install" in r]
    assert '".[export]"' in run and "-c scripts/constraints.txt" in run
    assert json.loads(instructions("ENTRYPOINT", "export")[0]) == ["openarc", "export"]


def exec_form(name: str) -> list[str]:
    (value,) = instructions(name)
    return json.loads(value)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's /app: the copied files, installed into a fresh venv; returns the venv's bin folder."""
    root = tmp_path_factory.mktemp("image")
    app = root / "app"
    app.mkdir()
    for copy in instructions("COPY"):
        *sources, destination = shlex.split(copy)
        for source in sources:
            target = app / destination / (Path(source).name if destination.endswith("/") else "")
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source, app / destination, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(ROOT / source, target)
    (run,) = [r for r in instructions("RUN") if "pip install" in r]
    assert run.split() == ["pip", "install", "--no-cache-dir", "."], "update this test with the RUN line"
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    # The same install as the image's (the pip cache is allowed here only to save time).
    subprocess.run(
        [
            str(root / "venv/bin/python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            ".",
        ],
        cwd=app,
        check=True,
        timeout=1200,
    )
    return root / "venv/bin"


def test_image_installs_without_torch(image: Path):
    listed = subprocess.run(
        [str(image / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "openarc==" in listed and "openvino-genai==" in listed
    assert "torch==" not in listed and "optimum" not in listed, "the serving image stays light"
    where = subprocess.run(
        [
            str(image / "python"),
            "-c",
            "import adapters.openvino.worker.loop, gateway; print(gateway.__file__)",
        ],
        cwd=image,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(image.parent)), f"imported from outside the image's install: {where}"
    installed = Path(where).parent.parent  # site-packages
    missing = [
        str(path.relative_to(ROOT))
        for package in ("gateway", "adapters", "bench")
        for path in [*(ROOT / package).rglob("*.py"), *(ROOT / package).rglob("*.html")]
        if not (installed / path.relative_to(ROOT)).is_file()
    ]
    assert not missing, f"the image lacks {missing}: does the Containerfile COPY every package?"


def test_entry_command_serves_until_healthy(image: Path, tmp_path: Path):
    entrypoint, cmd = exec_form("ENTRYPOINT"), exec_form("CMD")
    port = free_port()
    previous = ["", *cmd]
    args = [str(port) if previous[i] == "--port" else arg for i, arg in enumerate(cmd)]
    log = (tmp_path / "image.log").open("w")
    # Run outside the source tree, so nothing is imported from it: only what the image holds.
    process = subprocess.Popen(
        [str(image / entrypoint[0]), *entrypoint[1:], *args],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": f"{image}:{os.environ['PATH']}"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert process.poll() is None, (tmp_path / "image.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the image's entry command never became healthy")
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            json={
                "model": "SmolLM2-135M-Instruct",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 3,
            },
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert "<select" in httpx.get(f"{url}/", timeout=10).text, "the chat page comes with the image"
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0
        log.close()


def test_compose_points_open_webui_at_openarc():
    """compose.yaml cannot run here either: check that it builds this Containerfile, waits for the
    image's health check, and gives Open WebUI OpenArc's /v1 on the port the image serves."""
    import yaml

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    openarc = services["openarc"]
    assert openarc["build"]["dockerfile"] == "Containerfile"
    port = exec_form("CMD")[exec_form("CMD").index("--port") + 1]
    webui = services["open-webui"]
    assert webui["depends_on"]["openarc"]["condition"] == "service_healthy"
    assert webui["environment"]["OPENAI_API_BASE_URL"] == f"http://openarc:{port}/v1"
