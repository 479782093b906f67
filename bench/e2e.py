"""What the end-to-end scripts share (scripts/e2e-*): a headless Chromium, and printing as they go."""

from __future__ import annotations

import shutil
import sys
from typing import Any


def headless_chromium(width: int, height: int) -> Any:
    """Debian's chromium driven through its chromedriver (selenium is imported only here, on use)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def say(line: str) -> None:
    """One line of the script's report, at once (the scripts run for minutes)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
