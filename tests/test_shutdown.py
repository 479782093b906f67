"""SIGTERM: running streams finish within the grace period, what is left is cancelled, the process exits 0
and leaves no engine process behind. Each test stops its own server."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil
from conftest import DEMO

from gateway.harness import running_server

MARGIN = 30
"""Seconds allowed past the grace period for the lifespan shutdown to stop the engines and exit."""


@contextlib.contextmanager
def server(tmp_path: Path, grace: float) -> Iterator[tuple[str, psutil.Process, Path]]:
    config = tmp_path / "openarc.toml"
    config.write_text(f'shutdown_grace = {grace}\n[[models]]\nid = "{DEMO}"\nsource = "demo"\n')
    log = tmp_path / "server.log"
    with running_server(config, log) as root:
        ours = [p for p in psutil.Process().children() if str(config) in p.cmdline()]
        assert len(ours) == 1
        yield root, ours[0], log


def engine_processes(process: psutil.Process) -> list[psutil.Process]:
    children = process.children(recursive=True)
    assert children, "the server runs its engine in a child process"
    return children


def assert_all_gone(processes: list[psutil.Process]) -> None:
    """Every process has exited (a zombie waiting for init to reap it counts as exited)."""
    _, alive = psutil.wait_procs(processes, timeout=15)
    left = []
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
    assert not left, f"orphan processes: {[(p.pid, p.cmdline()) for p in left]}"


def chat(max_tokens: int, **extra) -> dict:
    return {
        "model": DEMO,
        "messages": [{"role": "user", "content": "Count to a thousand."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }


def read_stream(root: str, max_tokens: int, started: threading.Event, results: list) -> None:
    """Read one stream to its end, recording every event; ``started`` is set at the first one."""
    events = []
    with httpx.stream("POST", f"{root}/v1/chat/completions", json=chat(max_tokens), timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
                started.set()
    results.append(events)


def stops_accepting(root: str, within: float = 30) -> bool:
    """Whether new connections are refused within ``within`` seconds (the signal is handled on a tick)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{root}/health", timeout=10)
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
            # Refused, or (a connection the listener took just before it closed) reset unanswered.
            return True
        time.sleep(0.05)
    return False


def test_sigterm_lets_running_streams_finish_and_exits_0(tmp_path):
    max_tokens = 64
    with server(tmp_path, grace=120) as (root, process, log):
        engines = engine_processes(process)
        results: list[list[str]] = []
        starts = [threading.Event() for _ in range(3)]
        readers = [
            threading.Thread(target=read_stream, args=(root, max_tokens, started, results))
            for started in starts
        ]
        for reader in readers:
            reader.start()
        for started in starts:
            assert started.wait(60), "every stream is running before SIGTERM"
        process.send_signal(signal.SIGTERM)
        assert stops_accepting(root), "new connections are refused while the streams go on"
        for reader in readers:
            reader.join(120)
        assert process.wait(120) == 0
    assert_all_gone(engines)
    assert len(results) == 3
    for events in results:
        assert events[-1] == "[DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        assert not any("error" in chunk for chunk in chunks)
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == max_tokens, "the whole answer, not cut short"
    assert "timeout graceful shutdown exceeded" not in log.read_text()


def test_sigterm_with_a_client_that_never_reads_exits_within_the_grace_period(tmp_path):
    grace = 5
    with server(tmp_path, grace=grace) as (root, process, log):
        engines = engine_processes(process)
        url = urlparse(root)
        body = json.dumps(chat(4000)).encode()
        with socket.socket() as sock:
            # A small receive buffer, so the server's writes back up as soon as possible.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((url.hostname, url.port))
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            deadline = time.monotonic() + 60
            while not httpx.get(f"{root}/health", timeout=10).json()["models"][0]["running"]:
                assert time.monotonic() < deadline, "the never-read request is running"
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            assert process.wait(grace + MARGIN) == 0
        # uvicorn's words when it cancels what is left at the end of the grace period: the request was
        # still running then, so the bound above was really tested.
        assert "timeout graceful shutdown exceeded" in log.read_text()
    assert_all_gone(engines)
