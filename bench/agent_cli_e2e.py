"""Codex CLI and Claude Code against a real OpenArc, end to end (``scripts/e2e-codex``, ``e2e-claude-code``).

Each runs one headless task on the demo model, reached through an alias (the tools send names of their
own), and passes when the tool connects, sends its real requests, gets well-formed streamed answers
and finishes without a protocol error: it exits 0 and every request OpenArc logged got a 2xx. A 135M
model will not do the task well; what it answered is printed, not judged.

    python -m bench.agent_cli_e2e codex|claude NPM_PREFIX
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from gateway.config import DEMO_MODEL_ID
from gateway.harness import running_server

ALIASES = {"codex": "openarc-local", "claude": "claude-*"}
"""The name each tool is given (Codex: any name; Claude Code: its own ``claude-...`` names, which a
pattern alias covers, sub-agents' included)."""
TASK = "Say hello in one short sentence."
REPETITION_PENALTY = 1.3
"""The agents send no sampling settings; with the demo model's own (temperature 0.2) the 135M model
answered Codex's long prompt with "Chatbot:" until the context was full, and Codex took the incomplete
response as an error. A penalty on repeats lets it end its turn."""
MODEL_LIMITS = {
    "codex": "Incomplete response returned, reason: max_output_tokens",
    "claude": "response exceeded the",
}
"""How each tool says the model did not end its turn in time: the 135M demo model, given an agent's
long prompt, writes until its budget is spent. The tool got and read a well-formed answer (it read the
stop reason), so this is the model's limit, not a protocol error, and the run still passes, saying so."""
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3})')


def _config(folder: Path, alias: str) -> Path:
    config = folder / "openarc.toml"
    config.write_text(
        f'[[models]]\nid = "{DEMO_MODEL_ID}"\nsource = "demo"\n\n'
        f"[models.sampling]\ntemperature = 0.2\nrepetition_penalty = {REPETITION_PENALTY}\n\n"
        f'[[aliases]]\nname = "{alias}"\nmodel = "{DEMO_MODEL_ID}"\n'
    )
    return config


def _codex(prefix: Path, root: str, home: Path) -> list[str]:
    codex_home = home / "codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        f'model = "{ALIASES["codex"]}"\nmodel_provider = "openarc"\n\n[model_providers.openarc]\n'
        f'name = "OpenArc"\nbase_url = "{root}/v1"\nwire_api = "responses"\nenv_key = "OPENARC_API_KEY"\n'
    )
    instructions = home / "instructions.md"
    instructions.write_text("You are a helpful assistant. Answer briefly.\n")
    # Codex's own system prompt and extra tools come to about 10,000 tokens, past the demo model's
    # 8,192: short instructions and no sub-agents, goals or web search bring the request to about 2,000.
    return [
        str(prefix / "node_modules/.bin/codex"),
        "exec",
        "--skip-git-repo-check",
        "--disable",
        "multi_agent",
        "--disable",
        "goals",
        "-c",
        'web_search="disabled"',
        "-c",
        f'model_instructions_file="{instructions}"',
        TASK,
    ]


def _claude(prefix: Path) -> list[str]:
    # --bare: three tools and a short system prompt (about 4 KB instead of 76 KB, which is past the demo
    # model's context window).
    return [str(prefix / "node_modules/.bin/claude"), "-p", TASK, "--bare", "--model", "claude-sonnet-4-5"]


def _environment(tool: str, root: str, home: Path) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home)}
    if tool == "codex":
        return {**env, "CODEX_HOME": str(home / "codex"), "OPENARC_API_KEY": "unused"}
    return {
        **env,
        "ANTHROPIC_BASE_URL": root,
        "ANTHROPIC_API_KEY": "unused",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",  # a per-conversation header would defeat the prefix cache
        # Its own setting for models with small windows: answers of 32,000 tokens leave no room for a
        # second turn in the demo model's 8,192.
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "512",
    }


def run(tool: str, prefix: Path) -> int:
    """Run ``tool`` on its task against a fresh server and print what happened; 0 when it passed."""
    with tempfile.TemporaryDirectory(prefix=f"openarc-e2e-{tool}-") as scratch:
        folder = Path(scratch)
        home = folder / "home"
        home.mkdir()
        log = folder / "server.log"
        with running_server(_config(folder, ALIASES[tool]), log) as root:
            command = _codex(prefix, root, home) if tool == "codex" else _claude(prefix)
            done = subprocess.run(
                command,
                cwd=home,
                env=_environment(tool, root, home),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=600,
            )
        requests = [m.groupdict() for m in _ACCESS.finditer(log.read_text())]
    api = [r for r in requests if r["path"].startswith(("/v1/responses", "/v1/messages"))]
    failed = [r for r in api if not r["status"].startswith("2")]
    said = (done.stdout + done.stderr).strip()
    sys.stdout.write(f"{tool} exited {done.returncode}; it said (last 2,000 characters):\n{said[-2000:]}\n")
    sys.stdout.write(
        f"requests OpenArc answered: {[(r['method'], r['path'], r['status']) for r in requests]}\n"
    )
    if not api or failed:
        sys.stdout.write(f"FAILED: {'no API request' if not api else failed}\n")
        return 1
    if done.returncode == 0:
        sys.stdout.write(f"OK: {len(api)} API requests, all answered 2xx, and {tool} finished its task\n")
        return 0
    if MODEL_LIMITS[tool] in said:
        sys.stdout.write(
            f"OK (protocol): {len(api)} API requests, all answered 2xx and read by {tool}; the demo model "
            "did not end its turn within the budget, which the tool reported as above\n"
        )
        return 0
    sys.stdout.write(f"FAILED: {tool} exited {done.returncode}\n")
    return 1


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the check; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.agent_cli_e2e", description=__doc__.split("\n")[0])
    parser.add_argument("tool", choices=sorted(ALIASES))
    parser.add_argument("prefix", type=Path, help="the npm prefix the tool is installed in")
    args = parser.parse_args(argv)
    return run(args.tool, args.prefix)


if __name__ == "__main__":
    sys.exit(main())
