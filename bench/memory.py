"""Memory and CPU of a running ``openarc serve`` and each of its processes (Linux ``/proc``)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

_PROC = Path("/proc")


def server_memory(root_url: str) -> list[tuple[str, int, float]]:
    """(role, pid, resident MB) for the server listening at ``root_url`` and every process under it:
    engines (their pids from ``/admin/models``), the multiprocessing resource tracker, and the
    preparers (the other children). Empty when the server cannot be found (another machine)."""
    port = root_url.rsplit(":", 1)[-1].split("/")[0]
    server = next((pid for pid in _pids() if _is_server(pid, port)), None)
    if server is None:
        return []
    engines = set()
    response = httpx.get(f"{root_url}/admin/models", timeout=10)
    if response.status_code == 200:
        engines = {m["engine_pid"] for m in response.json()["data"] if m.get("engine_pid")}
    rows = [("server", server, process_rss_mb(server))]
    for pid in _descendants(server):
        cmdline = _cmdline(pid)
        if pid in engines:
            role = "engine"
        elif "resource_tracker" in cmdline:
            role = "resource tracker"
        else:
            role = "preparer"
        rows.append((role, pid, process_rss_mb(pid)))
    return rows


def cpu_seconds(pids: list[tuple[str, int, float]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far, summed by role, of the processes ``server_memory``
    found; with the client's own (``client``)."""
    used: dict[str, float] = {}
    for role, pid, _ in pids:
        used[role] = used.get(role, 0.0) + _cpu_seconds(pid)
    times = os.times()
    used["client"] = times.user + times.system
    return used


def _cpu_seconds(pid: int) -> float:
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _pids() -> list[int]:
    return [int(p.name) for p in _PROC.iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_server(pid: int, port: str) -> bool:
    words = _cmdline(pid).split()
    return "gateway.cli" in words and "serve" in words and port in words


def _descendants(pid: int) -> list[int]:
    found = []
    for task in (_PROC / str(pid) / "task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def process_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (0 if it is gone)."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
