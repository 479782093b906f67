"""Open WebUI in front of OpenArc, end to end (run by ``scripts/e2e-openwebui``; docs/open-webui.md).

Starts OpenArc with the demo model and Open WebUI (from PyPI, in a venv of its own) pointed at it,
offline: no model downloads, no Ollama. Through Open WebUI's own API it signs up the first user (the
admin), lists the models (OpenArc's must be there, an unloaded one too, which loads when chosen),
turns the model's builtin tools off (they do not fit the demo model's context), gets a streamed answer,
leaves a stream early (OpenArc must stop generating) and asks for a chat title; then, in headless
Chromium, it opens Open WebUI signed in, asks the question in the chat box and saves a screenshot of the
answer. Prints what it measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.e2e import headless_chromium, say
from gateway.harness import free_port, parse, running_server, total

MODEL = "SmolLM2-135M-Instruct"
ON_DEMAND = "SmolLM2-on-demand"
"""The demo model again, not preloaded: Open WebUI must list it while it is unloaded, and choosing it
must load it."""
CONFIG = (
    os.environ.get("OPENARC_E2E_CONFIG_EXTRA", "")
    + f'[[models]]\nid = "{MODEL}"\nsource = "demo"\n'
    + f'[[models]]\nid = "{ON_DEMAND}"\nsource = "demo"\npreload = false\n'
)
QUESTION = "What is the capital of France?"


def main(open_webui: Path, screenshot: Path) -> None:
    """Start OpenArc and Open WebUI in front of it, run the API checks, then the browser check."""
    work = Path(tempfile.mkdtemp(prefix="openarc-owui-"))
    (work / "openarc.toml").write_text(CONFIG)
    with (
        running_server(work / "openarc.toml", work / "openarc.log") as openarc,
        webui(open_webui, work, openarc) as ui,
    ):
        token = api_checks(ui, openarc)
        browser_check(ui, token, screenshot)


@contextlib.contextmanager
def webui(binary: Path, work: Path, openarc: str) -> Iterator[str]:
    """Run Open WebUI (``binary``) against OpenArc on a free port, offline; yields its URL once healthy."""
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(work / "open-webui"),
        "OPENAI_API_BASE_URL": f"{openarc}/v1",
        "OPENAI_API_KEY": "not-needed",
        "ENABLE_OLLAMA_API": "false",
        "OFFLINE_MODE": "true",  # no model downloads, no update checks
        "HF_HUB_OFFLINE": "1",
        "WEBUI_SECRET_KEY": "e2e-only",
    }
    (work / "open-webui").mkdir()
    log = (work / "open-webui.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen(
        [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert process.poll() is None, (work / "open-webui.log").read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        say(f"Open WebUI up in {time.monotonic() - started:.1f} s")
        yield url
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def api_checks(ui: str, openarc: str) -> str:
    """The checks through Open WebUI's API (sign-up, models, a streamed answer, a stream left early, a title);
    returns the user's token."""
    with httpx.Client(base_url=ui, timeout=300) as client:
        user = {"name": "E2E", "email": "e2e@example.com", "password": "e2e-password"}
        token = client.post("/api/v1/auths/signup", json=user).raise_for_status().json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        models = [m["id"] for m in client.get("/api/models", headers=auth).raise_for_status().json()["data"]]
        say(f"models Open WebUI offers: {models}")
        assert MODEL in models and ON_DEMAND in models, models
        on_demand_check(client, auth, openarc)
        without_builtin_tools(client, auth)
        request = {
            "model": MODEL,
            "messages": [{"role": "user", "content": QUESTION}],
            "stream": True,
            "temperature": 0.2,
        }
        started = time.monotonic()
        first, pieces = None, []
        with client.stream("POST", "/api/chat/completions", headers=auth, json=request) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                for choice in json.loads(line[6:]).get("choices", []):
                    if choice["delta"].get("content"):
                        first = first or time.monotonic()
                        pieces.append(choice["delta"]["content"])
        answer = "".join(pieces)
        say(
            f"streamed through Open WebUI in {len(pieces)} pieces, "
            f"the first after {first - started:.2f} s: {answer!r}"
        )
        assert len(pieces) > 1 and "Paris" in answer, answer
        stop_check(client, auth, openarc)
        title_check(client, auth)
        return token


def on_demand_check(client: httpx.Client, auth: dict[str, str], openarc: str) -> None:
    """A model Open WebUI listed while it was unloaded loads when chosen, and answers."""
    state = httpx.get(f"{openarc}/v1/models/{ON_DEMAND}").json()["state"]
    assert state == "unloaded", state
    request = {"model": ON_DEMAND, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 16}
    started = time.monotonic()
    answer = client.post("/api/chat/completions", headers=auth, json=request).raise_for_status().json()
    state = httpx.get(f"{openarc}/v1/models/{ON_DEMAND}").json()["state"]
    say(
        f"{ON_DEMAND}, listed unloaded, chosen in Open WebUI: loaded and answered in "
        f"{time.monotonic() - started:.1f} s (now {state}): {answer['choices'][0]['message']['content']!r}"
    )
    assert state == "ready" and answer["choices"][0]["message"]["content"], answer


def without_builtin_tools(client: httpx.Client, auth: dict[str, str]) -> None:
    """What a user does in Admin Panel > Settings > Models > (the model) > Capabilities: untick "Builtin
    Tools". Open WebUI's chat page otherwise sends its own tools (about 26,000 characters of JSON schema)
    with every request, more than the demo model's 8,192-token context can hold."""
    model = {
        "id": MODEL,
        "base_model_id": None,
        "name": MODEL,
        "meta": {"capabilities": {"builtin_tools": False}},
        "params": {},
    }
    client.post("/api/v1/models/create", headers=auth, json=model).raise_for_status()
    say("Open WebUI's builtin tools turned off for the model (its capabilities)")


def stop_check(client: httpx.Client, auth: dict[str, str], openarc: str) -> None:
    """A client that stops reading makes Open WebUI close its request to OpenArc, which stops generating
    (OpenArc's gauge of running requests shows it: the answer asked for would take a minute or more)."""
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from 1 to 5000, separated by commas."}],
        "stream": True,
        "max_tokens": 4000,
        "ignore_eos": True,  # passed through by Open WebUI; the answer cannot end on its own
    }
    with client.stream("POST", "/api/chat/completions", headers=auth, json=request) as response:
        response.raise_for_status()
        seen_running = 0.0
        for lines, _ in enumerate(response.iter_lines()):
            seen_running = max(seen_running, running_requests(openarc))
            if lines == 40:
                break
        assert seen_running == 1, "OpenArc never showed the request running"
    stopped = time.monotonic()
    while running_requests(openarc) and time.monotonic() - stopped < 20:
        time.sleep(0.1)
    assert running_requests(openarc) == 0, "OpenArc still generates for a stream Open WebUI's client left"
    say(f"a stream left after 20 chunks: OpenArc stopped generating {time.monotonic() - stopped:.1f} s later")


def running_requests(openarc: str) -> float:
    """OpenArc's ``openarc_requests_running`` gauge, summed over its models."""
    metrics = httpx.get(f"{openarc}/metrics", timeout=10).raise_for_status().text
    return total(parse(metrics), "openarc_requests_running")


def title_check(client: httpx.Client, auth: dict[str, str]) -> None:
    """Title generation: Open WebUI asks the chat's model for a title, through OpenArc."""
    request = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]}
    response = client.post("/api/v1/tasks/title/completions", headers=auth, json=request)
    response.raise_for_status()
    title = response.json()["choices"][0]["message"]["content"]
    say(f"title generation through OpenArc answered: {title!r}")
    assert title.strip(), response.text


def browser_check(ui: str, token: str, screenshot: Path) -> None:
    """Sign in to Open WebUI with ``token`` in headless Chromium, ask the question in the chat box and save
    ``screenshot``; no error may show."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = headless_chromium(1280, 860)
    try:
        driver.get(ui + "/")
        driver.execute_script("localStorage.setItem('token', arguments[0]);", token)
        driver.get(ui + "/")
        wait = WebDriverWait(driver, 120)
        box = wait.until(
            lambda d: d.find_elements(By.ID, "chat-input") and d.find_element(By.ID, "chat-input")
        )
        wait.until(lambda d: MODEL in d.page_source)
        # A first sign-in opens a "what's new" dialog over the page: close it, then type into the box.
        webdriver.ActionChains(driver).send_keys(Keys.ESCAPE).perform()
        time.sleep(1)
        driver.execute_script("arguments[0].focus();", box)
        box.send_keys(QUESTION)
        box.send_keys(Keys.ENTER)
        # The question shows in the chat and an answer streams in under it (Open WebUI's own sampling
        # settings apply here, so the tiny model's words vary: its text is not checked).
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").text.count(QUESTION) >= 1)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#response-content-container")) >= 1)
        time.sleep(8)  # let the stream finish rendering
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        page = driver.find_element(By.TAG_NAME, "body").text
        refused = [line for line in page.splitlines() if "context length" in line or line.startswith("Error")]
        assert not refused, (
            f"Open WebUI's chat got an error from OpenArc: {refused[0]} (screenshot: {screenshot})"
        )
        say(f"the answer shows in Open WebUI's chat; screenshot: {screenshot}")
    except Exception:
        driver.save_screenshot(str(screenshot.with_suffix(".failed.png")))
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else "docs/open-webui.png"))
