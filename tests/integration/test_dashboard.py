"""Seeing the colony (issue 19): the web dashboard at /ui in a real headless browser
(Debian's chromium and chromedriver, driven by Selenium), `colonynode dashboard` and
`colonynode top`, against real daemons and a real executor."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from colonynode.sdk import Client
from tests.integration.harness import CLI, Colony, Daemon, Executors, cli, wait_until

FUNCTIONS = """
from colonynode.sdk import function

@function
def add(a, b):
    print("adding", a, b)
    return a + b
"""


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromium-driver: `make test` installs them"
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    b = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield b
    finally:
        b.quit()


@pytest.fixture
def two(colony: Colony, tmp_path: Path) -> Iterator[tuple[Daemon, Daemon, Executors]]:
    a = colony.founder("a")
    b = colony.joined("b", via=a)
    wait_until("a and b connected", lambda: a.status()["connected_peers"] == 1)
    ex = Executors(tmp_path, FUNCTIONS)
    ex.start(b)
    wait_until("b's executor", lambda: b.status()["scheduler"]["executors"] == 1, 60)
    try:
        yield a, b, ex
    finally:
        ex.stop_all()


def _text(browser: webdriver.Chrome, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def test_the_dashboard_shows_a_process_reaching_success_and_nothing_without_the_token(
    two: tuple[Daemon, Daemon, Executors], browser: webdriver.Chrome
) -> None:
    a, _, _ = two
    url = cli("dashboard", "--print", "--data-dir", str(a.dir)).stdout.strip()
    base, _, fragment = url.partition("#")
    assert base.endswith("/ui") and fragment.startswith("token=")

    browser.get(url)
    wait_until("the page shows both members",
               lambda: "b" in _text(browser, "#members tbody").split())  # fmt: skip
    assert "#token" not in browser.current_url  # taken out of the address bar
    with Client(a.dir) as client:
        done = client.run("add", 2, 3, executortype="py", timeout_s=60)
    pid = done["processid"]
    row = f'#processes tr[data-pid="{pid}"]'
    wait_until("the process row says SUCCESS",
               lambda: browser.find_elements(By.CSS_SELECTOR, row)
               and "SUCCESS" in _text(browser, row))  # fmt: skip
    browser.find_element(By.CSS_SELECTOR, row).click()
    wait_until("its timeline", lambda: "closed" in _text(browser, "#timeline"))
    timeline = _text(browser, "#timeline")
    assert "submitted" in timeline and "by a" in timeline
    assert "started" in timeline and "b-py" in timeline and "SUCCESS" in timeline
    assert _text(browser, "#output") == "[5]"
    wait_until("its log", lambda: "adding 2 3" in _text(browser, "#logs"))

    # The same page in a fresh tab with no token (another session): nothing shows.
    browser.delete_all_cookies()
    browser.execute_script("sessionStorage.clear()")
    browser.get(base)
    wait_until("the page refuses",
               lambda: "token" in _text(browser, "#banner").lower())  # fmt: skip
    assert not browser.find_element(By.ID, "main").is_displayed()
    assert pid not in browser.page_source and "b-py" not in browser.page_source
    browser.get(base + "#token=wrong")
    wait_until("a wrong token is refused",
               lambda: "unauthorized" in _text(browser, "#banner").lower())  # fmt: skip
    assert pid not in browser.page_source


def test_top_prints_members_voters_executors_and_process_counts(
    two: tuple[Daemon, Daemon, Executors],
) -> None:
    _, b, _ = two
    with Client(b.dir) as client:
        client.run("add", 1, 1, executortype="py", timeout_s=60)
    out = cli("top", "--once", "--data-dir", str(b.dir)).stdout
    assert "b in colony lab" in out and "1 of 1 members connected" in out
    assert "a (owner)" in out and "linked" in out
    assert "voters: a (pinned)" in out
    assert "executors here: 1" in out
    assert "success 1" in out


def test_dashboard_and_top_say_when_no_daemon_runs(tmp_path: Path) -> None:
    import subprocess

    for cmd in ("dashboard", "top"):
        flag = "--once" if cmd == "top" else "--print"
        r = subprocess.run([CLI, cmd, flag, "--data-dir", str(tmp_path)],
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode != 0 and "no colonynode daemon is running" in r.stderr + r.stdout
