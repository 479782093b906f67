"""Two OpenArc replicas behind nginx with session-affine routing (run by ``scripts/e2e-nginx``).

A multi-turn conversation is fast on OpenArc because each turn's prompt repeats the last one, which the
engine's prefix cache still holds; behind a load balancer that only pays if every turn of a
conversation reaches the same replica. nginx does that with consistent hashing on a session header
(``hash $http_x_session_id consistent``). This starts two replicas with the demo model on loopback ports
and nginx in front, runs several conversations of several turns, and checks that each conversation
stayed on one replica (nginx reports the upstream in a response header) and that from the second turn
on most of its prompt came from the cache. Prints what it measured.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.e2e import say
from gateway.harness import free_port, running_server

CONFIG = '[[models]]\nid = "SmolLM2-135M-Instruct"\nsource = "demo"\n'
MODEL = "SmolLM2-135M-Instruct"
NGINX_CONF = """
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    access_log {work}/nginx-access.log;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream openarc {{
        # Every turn of a conversation to the replica holding its prefix cache; a replica that goes
        # away moves only its own conversations.
        hash $http_x_session_id consistent;
        server 127.0.0.1:{port_a};
        server 127.0.0.1:{port_b};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://openarc;
            proxy_http_version 1.1;
            proxy_buffering off;          # server-sent events pass through as they come
            proxy_read_timeout 600s;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def main(conversations: int = 4, turns: int = 3) -> None:
    """Start two replicas and nginx in front of them, then run and check the conversations."""
    work = Path(tempfile.mkdtemp(prefix="openarc-nginx-"))
    (work / "openarc.toml").write_text(CONFIG)
    with (
        running_server(work / "openarc.toml", work / "a.log") as replica_a,
        running_server(work / "openarc.toml", work / "b.log") as replica_b,
        nginx(work, replica_a, replica_b) as front,
    ):
        check(front, conversations, turns)


@contextlib.contextmanager
def nginx(work: Path, replica_a: str, replica_b: str) -> Iterator[str]:
    """Run nginx in front of the two replicas on a free port; yields its URL, stops it on exit."""
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            work=work, port=port, port_a=replica_a.rsplit(":", 1)[1], port_b=replica_b.rsplit(":", 1)[1]
        )
    )
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    subprocess.run([binary, "-c", str(conf), "-p", str(work)], check=True)
    try:
        for _ in range(50):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([binary, "-c", str(conf), "-p", str(work), "-s", "stop"], check=False)


def check(front: str, conversations: int, turns: int) -> None:
    """Hold the conversations through nginx; assert that each stays on one replica and its later turns hit
    the prefix cache."""
    replicas_used: set[str] = set()
    with httpx.Client(base_url=front, timeout=300) as client:
        for number in range(conversations):
            session = f"conversation-{number}"
            messages = [{"role": "system", "content": f"You are assistant number {number}. Be brief."}]
            upstreams = []
            for turn in range(turns):
                messages.append({"role": "user", "content": f"Tell me fact {turn + 1} about the sea."})
                response = client.post(
                    "/v1/chat/completions",
                    headers={"X-Session-Id": session},
                    json={"model": MODEL, "messages": messages, "max_tokens": 40, "temperature": 0},
                )
                response.raise_for_status()
                body = response.json()
                messages.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
                usage = body["usage"]
                cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
                upstreams.append(response.headers["x-upstream"])
                say(
                    f"{session} turn {turn + 1}: {response.headers['x-upstream']}, "
                    f"prompt {usage['prompt_tokens']} tokens, {cached} cached"
                )
                if turn > 0:
                    assert cached > 0, f"turn {turn + 1} of {session} found nothing in the prefix cache"
            assert len(set(upstreams)) == 1, f"{session} moved between replicas: {upstreams}"
            replicas_used |= set(upstreams)
    say(f"{conversations} conversations, each on one replica; replicas used: {sorted(replicas_used)}")


if __name__ == "__main__":
    main()
