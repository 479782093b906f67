"""API keys on a real server: every source of keys, both headers, the admin key kept apart, open probes."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import DEMO

from gateway.auth import exposure_warnings
from gateway.cli import _parser, build_config
from gateway.config import ConfigError, ServerConfig
from gateway.harness import running_server

CONFIG_KEY = "sk-config-key"
FILE_KEY = "sk-file-key"
ENV_KEYS = ("sk-env-one", "sk-env-two")
ADMIN = "admin-secret-key"
ALL_KEYS = (CONFIG_KEY, FILE_KEY, *ENV_KEYS, ADMIN)

MISSING = "You didn't provide an API key."
INCORRECT = "Incorrect API key provided."


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A server with API keys from the config file, a key file and the environment, and an admin key."""
    workdir = tmp_path_factory.mktemp("secured")
    key_file = workdir / "keys.txt"
    key_file.write_text(f"# one key a line\n\n  {FILE_KEY}  \n# {CONFIG_KEY}-commented\n")
    config = workdir / "openarc.toml"
    config.write_text(
        f'api_keys = ["{CONFIG_KEY}"]\napi_key_file = "{key_file}"\nadmin_key = "{ADMIN}"\n'
        "models_dirs = []\n"  # the demo model alone: the list below is exact
        f'[[models]]\nid = "{DEMO}"\nsource = "demo"\n'
    )
    log = workdir / "server.log"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPENARC_API_KEY", ",".join(ENV_KEYS))
        with running_server(config, log) as root:
            env.undo()
            yield root, log


@pytest.fixture(scope="module")
def http(secured) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secured[0], timeout=120) as session:
        yield session


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CHAT = {"model": DEMO, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, MISSING),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, MISSING),
        ({"Authorization": "Bearer"}, MISSING),
        (bearer("sk-wrong"), INCORRECT),
        ({"X-Api-Key": "sk-wrong"}, INCORRECT),
        (bearer(CONFIG_KEY + "x"), INCORRECT),
        (bearer(CONFIG_KEY[:-1]), INCORRECT),
        (bearer(ADMIN), INCORRECT),  # the admin key opens /admin only
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", f"/v1/models/{DEMO}"),
        ("GET", "/metrics"),
        ("GET", "/schema/openapi.json"),
    ],
)
def test_refused_without_a_valid_key(http, method, path, headers, message):
    response = http.request(method, path, headers=headers, json=CHAT if method == "POST" else None)
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert response.json()["error"]["message"].startswith(message)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("key", [CONFIG_KEY, FILE_KEY, *ENV_KEYS])
@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key"])
def test_every_key_source_and_both_headers_are_accepted(http, key, header):
    value = f"Bearer {key}" if header == "Authorization" else key
    response = http.post("/v1/chat/completions", headers={header: value}, json=CHAT)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_metrics_and_schema_open_with_a_key(http):
    assert http.get("/metrics", headers=bearer(CONFIG_KEY)).text.startswith("# HELP")
    assert (
        http.get("/schema/openapi.json", headers={"X-Api-Key": FILE_KEY}).json()["openapi"].startswith("3.")
    )


def test_health_and_ready_need_no_key(http):
    assert http.get("/health").status_code == 200
    ready = http.get("/ready")
    assert ready.status_code == 200, ready.text


@pytest.mark.parametrize("headers", [{}, bearer(CONFIG_KEY), {"X-Api-Key": FILE_KEY}, bearer("sk-wrong")])
def test_admin_takes_only_the_admin_key(http, headers):
    response = http.get("/admin/models", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("headers", [bearer(ADMIN), {"X-Api-Key": ADMIN}])
def test_admin_key_opens_admin(http, headers):
    response = http.get("/admin/models", headers=headers)
    assert response.status_code == 200
    assert DEMO in [m["id"] for m in response.json()["data"]]


def test_openai_sdk_with_a_key(secured):
    client = openai.OpenAI(base_url=f"{secured[0]}/v1", api_key=ENV_KEYS[1], max_retries=0, timeout=120)
    answer = client.chat.completions.create(model=DEMO, messages=CHAT["messages"], max_tokens=3)
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert [m.id for m in client.models.list()] == [DEMO]
    stream = client.chat.completions.create(model=DEMO, messages=CHAT["messages"], max_tokens=3, stream=True)
    assert [c.choices[0].finish_reason for c in stream if c.choices][-1] in ("stop", "length")


def test_openai_sdk_with_a_wrong_key(secured):
    client = openai.OpenAI(base_url=f"{secured[0]}/v1", api_key="sk-wrong", max_retries=0, timeout=120)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model=DEMO, messages=CHAT["messages"], max_tokens=3)
    assert refused.value.code == "invalid_api_key"


def test_log_holds_no_keys_and_no_prompts(http, secured):
    marker = "zebra-marmalade-7431"
    request = {**CHAT, "messages": [{"role": "user", "content": f"Repeat: {marker}"}]}
    assert http.post("/v1/chat/completions", headers=bearer(CONFIG_KEY), json=request).status_code == 200
    assert http.get("/v1/models", headers=bearer("sk-wrong-and-logged?")).status_code == 401
    log = secured[1].read_text()
    assert "POST /v1/chat/completions" in log, "the access log is there, so the check below means something"
    for secret in (*ALL_KEYS, "sk-wrong-and-logged?", marker):
        assert secret not in log


# --- where keys come from (the CLI's merge, without a server) ---------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    return _parser().parse_args(["serve", *argv])


def test_keys_from_every_source_are_merged(tmp_path, monkeypatch):
    key_file = tmp_path / "keys"
    key_file.write_text("# comment\nfile-a\n\nfile-b\n  # indented comment\nflag-a\n")
    config = tmp_path / "c.toml"
    config.write_text('api_keys = ["config-a"]\n')
    monkeypatch.setenv("OPENARC_API_KEY", "env-a, env-b,")
    args = parse(
        [
            "--config",
            str(config),
            "--api-key",
            "flag-a",
            "--api-key",
            "flag-b",
            "--api-key-file",
            str(key_file),
        ]
    )
    assert build_config(args).api_keys == [
        "config-a",
        "file-a",
        "file-b",
        "flag-a",
        "flag-b",
        "env-a",
        "env-b",
    ]


def test_no_keys_by_default(monkeypatch):
    monkeypatch.delenv("OPENARC_API_KEY", raising=False)
    assert build_config(parse([])).api_keys == []


def test_unreadable_key_file_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read API key file"):
        build_config(parse(["--api-key-file", str(tmp_path / "missing")]))


def test_keys_never_show_in_the_config_repr():
    shown = repr(ServerConfig(api_keys=["sk-secret"], admin_key="admin-secret"))
    assert "sk-secret" not in shown and "admin-secret" not in shown


@pytest.mark.parametrize(
    ("config", "warned"),
    [
        (ServerConfig(), []),
        (ServerConfig(host="0.0.0.0"), ["the API is open", "/admin is open"]),
        (ServerConfig(host="0.0.0.0", admin_key="a"), ["the API is open"]),
        (ServerConfig(host="0.0.0.0", api_keys=["k"]), []),
    ],
)
def test_listening_beyond_loopback_without_keys_warns(config, warned):
    warnings = exposure_warnings(config)
    assert len(warnings) == len(warned)
    assert all(w.startswith(prefix) for w, prefix in zip(warnings, warned, strict=True))


def test_without_an_admin_key_admin_takes_the_api_keys(tmp_path):
    """With API keys and no admin key, /admin takes the API keys (README, API keys); nothing else opens it."""
    config = tmp_path / "openarc.toml"
    config.write_text(f'api_keys = ["{CONFIG_KEY}"]\n[[models]]\nid = "{DEMO}"\nsource = "demo"\n')
    with running_server(config, tmp_path / "server.log") as root:
        for headers, status in ((bearer(CONFIG_KEY), 200), ({"X-Api-Key": CONFIG_KEY}, 200), ({}, 401)):
            response = httpx.get(f"{root}/admin/models", headers=headers, timeout=30)
            assert response.status_code == status, response.text
        wrong = httpx.get(f"{root}/admin/models", headers=bearer(ADMIN), timeout=30)
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
