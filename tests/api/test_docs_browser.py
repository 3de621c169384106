"""``/docs`` in a real browser (Debian's headless Chromium, driven by Playwright): the page
renders every operation of the document, and every request it makes goes to the service
itself (no CDN, no validator.swagger.io), as on a network with no internet."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_the_docs_page_renders_with_no_outside_request(live_server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra)")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian's chromium package; .ci/run has it)")
    requested: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{live_server.url}/docs")
            page.wait_for_selector(".opblock-summary", timeout=30_000)
            shown = page.locator(".opblock-summary-path").all_inner_texts()
            errors = page.locator(".errors-wrapper").count()
        finally:
            browser.close()
    assert "/v1/verify" in shown and "/v1/speakers/{speaker_id}/enrollments" in shown
    assert len(shown) >= 23
    assert errors == 0
    assert requested and all(url.startswith(live_server.url) for url in requested), requested
