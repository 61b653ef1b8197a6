"""Real Chromium for the desk's tests: installed when missing, driven with Selenium.

* ``ensure_chromium``: Debian's ``chromium`` and ``chromium-driver``, installed with
  apt-get under a file lock when missing and the tests run as root (as the cluster tests
  install nginx); :class:`ChromiumMissing` says why it could not be had.
* ``start_browser``: headless Chromium with a fresh profile and nothing that reaches the
  network by itself (this machine's network is closed).
* ``axe_violations``: the vendored axe-core, injected into the page, with the WCAG 2.1
  A and AA rules; the violations, each with its rule and the elements it names.
* Helpers that find things as a screen reader does: by role and accessible name, by
  label, never by CSS class.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

AXE = Path(__file__).resolve().parent / "vendor" / "axe" / "axe.min.js"
PACKAGES = ("chromium", "chromium-driver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
HOW_TO_ENABLE = (
    "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver) "
    "or run the tests as root with apt-get available"
)


class ChromiumMissing(RuntimeError):
    """Chromium or its driver is not installed and could not be installed here."""


def _found() -> tuple[str, str] | None:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    return (browser, driver) if browser and driver else None


def ensure_chromium() -> tuple[str, str]:
    """(browser, driver) paths, installing Debian's packages first if need be."""
    found = _found()
    if found is not None:
        return found
    lock = Path(tempfile.gettempdir()) / "schakel-tests-chromium-install.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        return _found() or _install()


def _install() -> tuple[str, str]:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ChromiumMissing("chromium is not installed (installing needs root with apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", *PACKAGES]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, check=False, env=env)
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    found = _found()
    if found is None:
        tail = (result.stderr or result.stdout).strip()[-300:]
        raise ChromiumMissing(f"could not install chromium: {tail}")
    return found


def start_browser(profile: Path) -> webdriver.Chrome:
    browser, driver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--lang=nl-NL")
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(30)
    return chrome


def axe_violations(chrome: webdriver.Chrome) -> list[dict[str, Any]]:
    """Run axe-core's WCAG 2.1 A and AA rules on the page; the violations found."""
    chrome.execute_script(AXE.read_text("utf-8"))
    chrome.set_script_timeout(30)
    result = chrome.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: {type: 'tag',
                 values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
                 resultTypes: ['violations']})
           .then(r => done(JSON.stringify(r.violations)))
           .catch(e => done(JSON.stringify([{id: 'axe-error', help: String(e), nodes: []}])));
        """
    )
    violations: list[dict[str, Any]] = json.loads(result)
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']}: {v.get('help')} -> {[n.get('target') for n in v.get('nodes', [])][:5]}"
        for v in violations
    )


# -- finding things as a person (and a screen reader) does ---------------------------------


_TEXT = "(e) => (e.innerText || e.textContent || '').replace(/\\s+/g, ' ').trim()"


def _one(chrome: webdriver.Chrome, script: str, *args: Any) -> WebElement | None:
    """The element a script finds, in one run (no element read one round trip at a time,
    none that a page being replaced could make stale halfway)."""
    found = chrome.execute_script(f"const text = {_TEXT};" + script, *args)
    return found if isinstance(found, WebElement) else None


def field(chrome: webdriver.Chrome, label: str) -> WebElement:
    """The form control whose <label> reads exactly ``label``."""
    found = _one(
        chrome,
        "const l = Array.from(document.querySelectorAll('label'))"
        ".find(l => text(l) === arguments[0]);"
        "return l ? document.getElementById(l.htmlFor) : null;",
        label,
    )
    assert found is not None, f"no field labelled {label!r}"
    return found


def press(chrome: webdriver.Chrome, element: WebElement) -> None:
    """Click ``element`` as a person would: scrolled into the middle of the view first."""
    navigates = bool(
        chrome.execute_script(
            "const e = arguments[0];"
            "return (e.tagName === 'A' && !!e.href)"
            " || (['BUTTON', 'INPUT'].includes(e.tagName) && e.type === 'submit' && !!e.form);",
            element,
        )
    )
    chrome.execute_script(
        "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});"
        "if (arguments[1]) { window.schakelPressed = true; }",
        element,
        navigates,
    )
    element.click()
    if navigates:  # the next page, fully loaded, before the test reads anything
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            try:
                if chrome.execute_script(
                    "return window.schakelPressed === undefined"
                    " && document.readyState === 'complete';"
                ):
                    return
            except WebDriverException:  # the page is being replaced
                pass
            time.sleep(0.05)


def button(chrome: webdriver.Chrome, name: str) -> WebElement:
    """The button whose text reads exactly ``name``."""
    found = _one(
        chrome,
        "return Array.from(document.querySelectorAll('button, [role=button]'))"
        ".find(b => text(b) === arguments[0]) || null;",
        name,
    )
    assert found is not None, f"no button {name!r}"
    return found


def link(chrome: webdriver.Chrome, name: str) -> WebElement:
    found = _one(
        chrome,
        "return Array.from(document.querySelectorAll('a'))"
        ".find(a => text(a) === arguments[0]) || null;",
        name,
    )
    assert found is not None, f"no link {name!r}"
    return found


def choose(chrome: webdriver.Chrome, group: str, option: str) -> None:
    """Tick the radio button or checkbox ``option`` inside the fieldset ``group``."""
    label = _one(
        chrome,
        "for (const f of document.querySelectorAll('fieldset')) {"
        "  const legend = f.querySelector('legend');"
        "  if (!legend || text(legend) !== arguments[0]) continue;"
        "  const l = Array.from(f.querySelectorAll('label')).find(l => text(l) === arguments[1]);"
        "  if (l) return l;"
        "}"
        "return null;",
        group,
        option,
    )
    assert label is not None, f"no option {option!r} in {group!r}"
    control = chrome.find_element(By.ID, label.get_attribute("for") or "")
    if not control.is_selected():
        press(chrome, label)


def heading(chrome: webdriver.Chrome) -> str:
    """The page's <h1>, read in one script run (no element that a page being replaced
    could make stale); "" while there is none."""
    found = chrome.execute_script(
        "const h = document.querySelector('h1');"
        "return h ? h.innerText.replace(/\\s+/g, ' ').trim() : '';"
    )
    return str(found or "")


def at(chrome: webdriver.Chrome, expected: str, timeout: float = 15.0) -> str:
    """The <h1> once it reads ``expected`` (a submitted form's next page), or what it
    reads after ``timeout``: compare the result with ``expected``."""
    deadline = time.monotonic() + timeout
    found = heading(chrome)
    while found != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        found = heading(chrome)
    return found
