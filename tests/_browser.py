"""A headless Chromium for the browser tests: the system's (Debian's ``chromium``), driven by Playwright.

Nothing here downloads a browser: Playwright launches ``/usr/bin/chromium``
(or ``$PPL_VAE_CHROMIUM``). Where that or the ``playwright`` package is
missing, the tests that use :func:`chromium` skip and say which and how to
get it; CI installs both (see .ci/run).

Test modules import the fixture: ``from _browser import chromium  # noqa: F401``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("PPL_VAE_CHROMIUM", "/usr/bin/chromium"))

#: Headless, sandbox off (CI runs as root), and none of Chromium's own background traffic.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[dev]'"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)) and shutil.which(str(CHROMIUM)) is None:
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or set PPL_VAE_CHROMIUM)"
    return None


@pytest.fixture(scope="session")
def chromium():
    """A launched headless Chromium (a Playwright ``Browser``), shared by the session."""
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class RequestLog:
    """Every request a page attempts, seen by a route that aborts all but the allowed URLs.

    ``allowed`` is a set of URLs or a predicate on a URL.
    """

    def __init__(self, page, allowed: set[str] | Callable[[str], bool]) -> None:
        self.urls: list[str] = []
        self.allowed = allowed if callable(allowed) else allowed.__contains__
        page.on("request", lambda request: self.urls.append(request.url))
        page.route("**/*", self._route)

    def _route(self, route) -> None:
        if self.allowed(route.request.url):
            route.continue_()
        else:
            route.abort()

    @property
    def foreign(self) -> list[str]:
        return [url for url in self.urls if not self.allowed(url)]


def keep_screenshot(tab, name: str, full_page: bool = False) -> None:
    """Save a screenshot of ``tab`` as ``name`` under ``$PPL_VAE_ARTIFACTS``, when that is set
    (CI, or a person who wants to look at what the tests saw)."""
    folder = os.environ.get("PPL_VAE_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(folder) / name), full_page=full_page)
