"""A thin helper over selenium's Chrome driver for the console's tests: open a node's console, find things
the way a person would (by visible text, by role of the control), wait for the page to follow a change
(polling with a deadline, never a fixed sleep), read the browser's log, and take screenshots."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

T = TypeVar("T")
TIMEOUT_S = 15.0
WINDOW = (1280, 860)


class Browser:
    """One headless Chromium window."""

    def __init__(self, driver: webdriver.Chrome, screenshots: Path, docs: Path | None, refresh_docs: bool) -> None:
        self.driver = driver
        self.screenshots = screenshots
        self.docs = docs
        self.refresh_docs = refresh_docs
        self.network_changes = 0
        self._log: list[dict[str, Any]] = []

    @classmethod
    def start(
        cls, chromium: str, chromedriver: str, screenshots: Path, *, docs: Path | None = None, refresh_docs: bool = False
    ) -> Browser:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         f"--window-size={WINDOW[0]},{WINDOW[1]}", "--no-first-run", "--disable-extensions",
                         "--disable-background-networking", "--lang=en-US"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        driver.set_page_load_timeout(30)
        return cls(driver, screenshots, docs, refresh_docs)

    def quit(self) -> None:
        self.driver.quit()

    # -- navigation -------------------------------------------------------------------------------------
    def open(self, url: str) -> None:
        """Load a URL until the console has started, and mark the document, so :meth:`reloaded` can tell
        whether it was loaded again.

        Chromium aborts requests in flight when the host's network interfaces change (Docker starting or
        stopping containers on this machine does that), even on loopback (``net::ERR_NETWORK_CHANGED``). The
        console's own calls recover (they retry), but a module that failed to load leaves a dead page; so a
        load that did not start the console and saw that error is tried again, as a person would reload.
        """
        for attempt in range(3):
            self.driver.get(url)
            try:
                self.wait(lambda: self.driver.execute_script("return document.documentElement.dataset.console"),
                          "the console to start", timeout_s=TIMEOUT_S)
                break
            except AssertionError:
                self.errors()
                if attempt == 2 or not self.network_changes:
                    raise
        self.driver.execute_script("window.__consoleTestMark = 'loaded-once';")

    def reloaded(self) -> bool:
        """True when the document was loaded again since :meth:`open` (the mark is gone)."""
        return self.driver.execute_script("return window.__consoleTestMark") != "loaded-once"

    def wait(self, predicate: Callable[[], T], what: str, timeout_s: float = TIMEOUT_S) -> T:
        """Poll ``predicate`` until it returns something truthy; AssertionError (with the page text) at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except (NoSuchElementException, StaleElementReferenceException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; the browser logged "
                                     f"{self.errors()}; the page says:\n{self.text()[:3000]}")
            time.sleep(0.05)

    # -- reading ----------------------------------------------------------------------------------------
    def text(self) -> str:
        try:
            return str(self.driver.find_element(By.TAG_NAME, "body").text)
        except WebDriverException:
            return ""

    def shows(self, text: str) -> bool:
        return text in self.text()

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def link(self, text: str) -> WebElement:
        """A link whose visible text is exactly ``text``."""
        return self.driver.find_element(By.XPATH, f"//a[normalize-space(.)={xpath_literal(text)}]")

    def button(self, text: str, within: WebElement | None = None) -> WebElement:
        """A visible button whose text is exactly ``text`` (inside ``within`` when given)."""
        root: Any = within if within is not None else self.driver
        for candidate in root.find_elements(By.XPATH, f".//button[normalize-space(.)={xpath_literal(text)}]"):
            if candidate.is_displayed():
                return candidate  # type: ignore[no-any-return]
        raise NoSuchElementException(f"no visible button {text!r}")

    def row_with(self, text: str) -> WebElement:
        """The table row whose text contains ``text``."""
        return self.driver.find_element(By.XPATH, f"//tr[contains(normalize-space(.), {xpath_literal(text)})]")

    def click_in_row(self, row_text: str, button: str) -> None:
        """Click a button in the row showing ``row_text`` (found again if the page redrew the row meanwhile)."""
        self.wait(lambda: self.button(button, self.row_with(row_text)).click() or True, f"{button!r} in {row_text}")

    def labelled(self, label: str, within: WebElement | None = None) -> WebElement:
        """The control inside the <label> whose label text is ``label``."""
        root: Any = within if within is not None else self.driver
        return root.find_element(  # type: ignore[no-any-return]
            By.XPATH, f".//label[span[normalize-space(.)={xpath_literal(label)}]]//*[self::input or self::textarea or self::select]")

    def alert_open(self) -> bool:
        try:
            self.driver.switch_to.alert  # noqa: B018 (raises when there is none)
        except NoAlertPresentException:
            return False
        return True

    def errors(self) -> list[str]:
        """Every SEVERE entry of the browser's log (JavaScript errors, failed fetches, CSP violations), but
        ``net::ERR_NETWORK_CHANGED``: the host changed its network interfaces (see :meth:`open`); those are
        counted in ``network_changes``."""
        self._log.extend(self.driver.get_log("browser"))
        severe = [f"{e.get('source')}: {e.get('message')}" for e in self._log if e.get("level") == "SEVERE"]
        self.network_changes = sum("net::ERR_NETWORK_CHANGED" in e for e in severe)
        return [e for e in severe if "net::ERR_NETWORK_CHANGED" not in e]

    def screenshot(self, name: str) -> Path:
        """The whole page (up to 2,400 pixels high) as <screenshots>/<name>.png, copied to <docs>/<name>.png
        when that is missing or ``refresh_docs``."""
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{name}.png"
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
        self.driver.set_window_size(WINDOW[0], min(max(WINDOW[1], height + 120), 2400))
        try:
            assert self.driver.save_screenshot(str(path)), f"no screenshot of {name}"
        finally:
            self.driver.set_window_size(*WINDOW)
        if self.docs is not None and (self.refresh_docs or not (self.docs / path.name).exists()):
            self.docs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.docs / path.name)
        return path


def xpath_literal(text: str) -> str:
    """``text`` as an XPath string literal (concat() when it holds both kinds of quote)."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    parts = text.split("'")
    return "concat(" + ", \"'\", ".join(f"'{p}'" for p in parts) + ")"
