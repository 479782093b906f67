"""The chat page at ``/``: served from the package, self-contained, public, and turned off by a flag.

What it does in a browser (a streamed answer, stop, the figures under each answer) is checked by
``scripts/e2e-chat-page`` in headless Chromium, kept out of the default test command because it needs
Debian's chromium and chromedriver.
"""

from __future__ import annotations

import re

import httpx
import msgspec
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.config import ServerConfig
from gateway.registry import ModelRegistry


def test_page_is_served(http: httpx.Client):
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for element in ('id="model"', 'id="prompt"', 'id="send"', 'id="stop"'):
        assert element in page
    assert "/v1/chat/completions" in page and "stream_options" in page
    # HEAD, which Claude Code sends first, answers as GET does, without the page.
    probe = http.head("/")
    assert probe.status_code == 200 and not probe.content


def test_page_loads_nothing_from_elsewhere(http: httpx.Client):
    """It must work offline: no script, style or image from another origin."""
    page = http.get("/").text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page


def _app(**settings) -> TestClient:
    config = msgspec.structs.replace(ServerConfig(), **settings)
    return TestClient(create_app(config, registry=ModelRegistry(config)))


def test_page_needs_no_key_but_the_api_does():
    with _app(api_keys=["secret"]) as client:
        assert client.get("/").status_code == 200
        assert client.get("/v1/models").status_code == 401


def test_no_chat_page_flag():
    with _app(chat_page=False) as client:
        response = client.get("/")
        assert response.status_code == 404
        assert "--no-chat-page" in response.json()["error"]["message"]
        assert client.head("/").status_code == 404
