"""Drive a real ``openarc serve`` from outside, as a user's program would: start it on a free loopback
port and wait until it is healthy, and read its ``/metrics`` back into numbers.

The benchmark (``bench``), the tests and the end-to-end checks all use this, so every one of them talks
to the server exactly as a user's client would. It imports no backend code: the server runs in a child
process started by its own command line.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from .config import ModelSpec, ServerConfig

_ROOT = Path(__file__).resolve().parent.parent
"""Where ``gateway`` is importable from: the child server runs there."""


class ServerStartError(RuntimeError):
    """The server exited or did not become healthy; the message ends with its log."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(config: Path, log: Path, timeout: float = 300) -> Iterator[str]:
    """Serve ``config`` on 127.0.0.1 (output to ``log``); yields the root URL, stops the server after."""
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with child_process(command, log, cwd=_ROOT) as process:
        _wait_until_healthy(url, process, log, timeout)
        yield url


@contextlib.contextmanager
def child_process(command: list[str], log: Path, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run ``command`` with its output to ``log``; stop it on the way out (SIGTERM, SIGKILL after 30 s)."""
    with log.open("w") as log_file:
        process = subprocess.Popen(command, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def serving(models: list[ModelSpec]) -> Iterator[str]:
    """A server for ``models`` alone, its config and warning-level log in a temporary folder; yields
    its root URL (what the benchmarks run against)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.json"
        config.write_bytes(msgspec.json.encode(ServerConfig(models=models, log_level="warning")))
        with running_server(config, Path(tmp) / "server.log") as url:
            yield url


def _wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"openarc exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)  # fine enough to time a start (bench.startup)
    raise ServerStartError(f"openarc did not become healthy in {timeout} s:\n{log.read_text()[-4000:]}")


# --- reading /metrics (Prometheus text exposition) with prometheus-client's own parser ---

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""Every sample of one scrape, keyed by (sample name, labels)."""


def parse(text: str) -> Samples:
    """Every sample of a ``/metrics`` text, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels; 0 when there is none (a labelled counter not yet used)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    """The sum of a sample over all its labels (every model's)."""
    return sum(figure for (sample, _), figure in samples.items() if sample == name)
