"""Drive the chat page in headless Chromium (run by ``scripts/e2e-chat-page``; needs selenium).

Checks what a user sees: the model list fills, a question gets a streamed answer with its figures
(TTFT, tokens/s, cached prompt tokens), a second turn is served partly from the prefix cache, and Stop
ends a long answer mid-way. Prints what it measured and saves a screenshot.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bench.e2e import headless_chromium, say
from gateway.harness import running_server

CONFIG = '[[models]]\nid = "SmolLM2-135M-Instruct"\nsource = "demo"\n'


def main(screenshot: Path) -> None:
    """Start a server with the demo model and drive its chat page in headless Chromium."""
    workdir = Path(tempfile.mkdtemp(prefix="openarc-e2e-"))
    (workdir / "openarc.toml").write_text(CONFIG)
    with running_server(workdir / "openarc.toml", workdir / "server.log") as root:
        driver = headless_chromium(1100, 800)
        try:
            run(driver, root, screenshot)
        finally:
            driver.quit()


def run(driver: webdriver.Chrome, root: str, screenshot: Path) -> None:
    """Two questions, then a long answer stopped mid-way, each checked as the user sees it."""
    wait = WebDriverWait(driver, 120)
    driver.get(root + "/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    model = driver.find_element(By.ID, "model").get_attribute("value")
    say(f"page loaded; model list: {model}")
    for turn, question in enumerate(["What is the capital of France?", "And of Italy?"], start=1):
        ask(driver, question)
        answer = wait.until(lambda d, turn=turn: finished(d, turn))
        say(f"turn {turn}: {answer.text!r}")
        assert "TTFT" in answer.text and "tok/s" in answer.text, answer.text
    driver.find_element(By.ID, "max-tokens").clear()
    driver.find_element(By.ID, "max-tokens").send_keys("2000")
    ask(driver, "Write a very long story about a lighthouse keeper.")
    wait.until(lambda d: len(answers(d)[2].text) > 40)
    driver.find_element(By.ID, "stop").click()
    stopped = wait.until(lambda d: finished(d, 3))
    assert answers(driver)[2].get_attribute("data-state") == "stopped", stopped.text
    say(f"turn 3 stopped after {len(stopped.text)} characters: {stopped.text[-80:]!r}")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    say(f"screenshot: {screenshot}")


def ask(driver: webdriver.Chrome, question: str) -> None:
    """Type ``question`` into the prompt box and send it."""
    box = driver.find_element(By.ID, "prompt")
    box.send_keys(question)
    driver.find_element(By.ID, "send").click()
    time.sleep(0.2)


def answers(driver: webdriver.Chrome) -> list:
    """The assistant turns on the page, oldest first."""
    return driver.find_elements(By.CSS_SELECTOR, ".turn.assistant")


def finished(driver: webdriver.Chrome, turn: int):
    """The turn's answer element once its figures are shown, else ``False``."""
    found = answers(driver)
    if len(found) < turn:
        return False
    stats = found[turn - 1].find_elements(By.CLASS_NAME, "stats")
    return found[turn - 1] if stats else False


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/chat-page.png"))
