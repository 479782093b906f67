"""``python -m bench.startup``: how soon a fresh ``openarc serve`` is ready, and what its first users wait.

Starts the server several times in a row with one model (the first start may convert a GGUF or compile;
later ones show a restart), with the model's warm-up on and then off, and times each start until
``/ready`` answers. On every start it then runs a short round robin of conversations, as agents and chat
users arrive on a new server, and prints the time to first token of each turn: the first turn pays for
whatever the warm-up at load did not do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

from gateway.config import ModelSpec, ServerConfig
from gateway.harness import running_server

from .http_load import multi_turn

MS = 1000


def main(argv: list[str] | None = None) -> int:
    """Time fresh starts, warm-up on and off, and the turns' TTFT after each; print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model source (default: the demo model)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--turn-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    lines = [
        f"Fresh starts of `openarc serve` with {args.model} on {args.device}, warm-up on and off; then "
        f"{args.conversations} conversations take {args.turns} turns each "
        f"({args.turn_tokens}-token replies).",
        "",
        "| start | warm-up | ready s | "
        + " | ".join(f"turn {t + 1} TTFT p50 ms" for t in range(args.turns))
        + " |",
        "|---|---|---|" + "---|" * args.turns,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(1, args.starts + 1):
            for warm_up in (True, False):
                spec = ModelSpec(id="bench", source=args.model, device=args.device, warm_up=warm_up)
                config = Path(tmp) / f"bench-{warm_up}.json"
                config.write_bytes(msgspec.json.encode(ServerConfig(models=[spec], log_level="info")))
                started = time.monotonic()
                with running_server(config, Path(tmp) / f"server-{start}-{warm_up}.log") as url:
                    _wait_ready(url)
                    ready = time.monotonic() - started
                    work = multi_turn(url, "bench", args.conversations, args.turns, args.turn_tokens)
                    turns = asyncio.run(work)
                ttfts = [statistics.median(t.ttft for t in timings) * MS for timings in turns]
                cells = " | ".join(f"{v:.0f}" for v in ttfts)
                lines.append(f"| {start} | {'on' if warm_up else 'off'} | {ready:.1f} | {cells} |")
                sys.stderr.write(lines[-1] + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _wait_ready(url: str) -> None:
    """``running_server`` waits for liveness; readiness means every model is loaded."""
    while httpx.get(f"{url}/ready", timeout=5).status_code != 200:
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
