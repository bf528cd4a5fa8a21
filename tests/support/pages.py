"""Browser tabs for the page tests: each in a fresh context (fresh sessionStorage, so signed
out), failing the test on a script error or on anything the page's Content-Security-Policy
blocked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page

TIMEOUT_MS = 15_000


def watch(tab: Page) -> list[str]:
    """The script errors and blocked resources of a tab, as they happen."""
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on(
        "console",
        lambda message: (
            problems.append(f"blocked: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    return problems


@contextmanager
def watched_tab(browser: Browser, width: int = 1366, height: int = 900) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    problems = watch(tab)
    try:
        yield tab
    finally:
        context.close()
    assert not problems, problems
