"""End to end in a real browser: headless Chromium (Debian's, never a downloaded one) driven
by Playwright against ``biometrics serve`` in a subprocess with the bundled model. An agent
signs in, opens the live call from the calls list while a simulated ACS call streams real
speech, claims both callers as the same enrolled reader, and sees the participants appear,
their speech progress advance and the verdicts arrive: ACCEPT for the genuine caller, REJECT
for the impostor; once the call has ended each card has a player for its recording. A
screenshot of the console during the call is written to the docs."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from biometrics import simulator
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.service import Service, start_service
from tests.test_live_call_real_speech import DEV, speech_of, utterances

CHROMIUM = Path(os.environ.get("BIOMETRICS_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "console-call.png"
GENUINE, IMPOSTOR = "4:+14255550101", "4:+14255550102"
SPEAKER = "reader-1688"
CALL_SPEECH_SECONDS = 14.0  # per caller, streamed in real time: the final verdict at 10 s
WAIT_MS = 120_000  # for anything the page shows; a shared two-CPU machine is slow
# The lowest WCAG contrast ratio of any visible text on the page against the background it
# is drawn on (the nearest ancestor's opaque background).
LOWEST_CONTRAST = """() => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const [R, G, B] = [r, g, b].map((c) => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  const background = (element) => {
    for (let at = element; at; at = at.parentElement) {
      const color = rgb(getComputedStyle(at).backgroundColor);
      if (color.length < 4 || color[3] === 1) return color.slice(0, 3);
    }
    return [255, 255, 255];
  };
  let lowest = { ratio: 21, text: "" };
  for (const element of document.querySelectorAll("body *")) {
    const own = [...element.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !element.checkVisibility()) continue;
    const a = luminance(rgb(getComputedStyle(element).color)), b = luminance(background(element));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < lowest.ratio) lowest = { ratio, text: element.textContent.trim().slice(0, 40) };
  }
  return lowest;
}"""

# How long the player's audio is, once Chromium has loaded it (-1 if it could not).
LOADED_SECONDS = """(audio) => new Promise((done) => {
  audio.addEventListener("loadedmetadata", () => done(audio.duration), { once: true });
  audio.addEventListener("error", () => done(-1), { once: true });
  audio.preload = "metadata";
  audio.load();
})"""

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(not DEV.is_dir(), reason="shared LibriSpeech excerpts absent"),
]
sync_api = pytest.importorskip("playwright.sync_api")
sync_api.expect.set_options(timeout=WAIT_MS)
expect = sync_api.expect


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the module: starting it (torch, the model) is most of the time."""
    folder = tmp_path_factory.mktemp("console")
    with WebhookSink(secrets.token_hex(16)) as sink:
        recorded = {"BIOMETRICS_RECORDINGS": "on", "BIOMETRICS_RECORDINGS_DIR": str(folder / "rec")}
        url = f"sqlite:///{folder / 'console.db'}"
        running = start_service(folder, url, "bundled", sink, recorded)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def page(service: Service) -> Iterator[Any]:
    """A Chromium page signed in to the console with the admin key, on the calls list."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{service.url}/console")
            expect(page).to_have_url(f"{service.url}/console/sign-in?next=/console")
            page.get_by_label("API key").fill(service.admin_key)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Live calls")).to_be_visible()
            yield page
        finally:
            browser.close()


def caller_speech(speaker: str, files: slice) -> np.ndarray:
    speech = np.concatenate([speech_of(data) for data in utterances(speaker)[files]])
    return speech[: int(CALL_SPEECH_SECONDS * 16_000)]


def stream_call_in_background(service: Service, call_id: str) -> threading.Thread:
    """The call, sent frame by frame in real time, as ACS would, from a thread."""
    streams = [
        simulator.Stream(GENUINE, simulator.to_pcm(caller_speech("1688", slice(4, 7)))),
        simulator.Stream(IMPOSTOR, simulator.to_pcm(caller_speech("367", slice(0, 3)))),
    ]
    headers = {
        "x-ms-call-connection-id": call_id,
        "Authorization": f"Bearer {service.stream_key}",
    }
    frames = simulator.frames_for(streams, 16_000, datetime.now(UTC))
    audio_format = simulator.call_format(16_000, str(uuid.uuid4()))

    def play() -> None:
        asyncio.run(
            simulator.stream_call(
                service.socket_url, headers, audio_format, frames, realtime=True, linger=1.0
            )
        )

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread


def enroll_reader(service: Service) -> None:
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=120) as http:
        for data in utterances("1688")[:4]:
            enrolled = http.post(
                f"/v1/speakers/{SPEAKER}/enrollments",
                content=data,
                headers={"content-type": "audio/flac"},
            )
            enrolled.raise_for_status()
    assert enrolled.json()["status"] == "ENROLLED", enrolled.text


def test_an_agent_watches_a_live_call_accept_the_caller_and_reject_the_impostor(service, page):
    enroll_reader(service)
    call_id = f"console-{uuid.uuid4().hex[:8]}"
    call = stream_call_in_background(service, call_id)
    page.get_by_role("link", name=call_id).click()  # once the list has refreshed
    expect(page).to_have_url(f"{service.url}/console/calls/{urllib.parse.quote(call_id)}")

    cards = {
        raw_id: page.locator(f'section.participant[data-raw-id="{raw_id}"]')
        for raw_id in (GENUINE, IMPOSTOR)
    }
    genuine, impostor = cards[GENUINE], cards[IMPOSTOR]
    progress = genuine.locator('[data-field="progress"]')
    expect(genuine).to_be_visible()  # as its first frame arrives
    first = float(progress.evaluate("bar => bar.value"))
    for card in cards.values():
        expect(card).to_be_visible()
        card.get_by_label("Claimed speaker").fill(SPEAKER)
        card.get_by_role("button", name="Set claim").click()
        expect(card.locator('[data-field="claim"]')).to_have_text(SPEAKER)

    page.wait_for_function(
        "([bar, seen]) => bar.value > seen + 1", arg=[progress.element_handle(), first]
    )
    expect(genuine.locator('[data-field="decision"]')).to_have_text("ACCEPT")
    expect(impostor.locator('[data-field="decision"]')).to_have_text("REJECT")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    lowest = page.evaluate(LOWEST_CONTRAST)
    assert lowest["ratio"] >= 4.5, lowest  # WCAG AA for text

    # The call ends; the final verdicts, on the full 10 s, are what the page keeps.
    expect(page.locator('[data-field="call_status"]')).to_have_text("ENDED")
    call.join(timeout=WAIT_MS / 1000)
    expect(genuine.locator('[data-field="decision"]')).to_have_text("ACCEPT")
    expect(impostor.locator('[data-field="decision"]')).to_have_text("REJECT")
    assert float(progress.evaluate("bar => bar.value")) >= 9.9
    # Every verdict, as it came: the impostor's were all refusals.
    history = impostor.locator('[data-field="history"] [data-cell="decision"]')
    decisions = history.all_inner_texts()
    assert decisions.count("REJECT") >= 2 and "ACCEPT" not in decisions, decisions
    for raw_id, card in cards.items():  # the recordings, recorded throughout, may be played
        source = f"/console/api/calls/{call_id}/participants/{urllib.parse.quote(raw_id, safe='')}"
        player = card.get_by_label(f"Recording of participant {raw_id}")
        expect(player).to_have_attribute("src", source + "/audio")
    seconds = genuine.locator("audio").evaluate(LOADED_SECONDS)  # Chromium can play it
    assert seconds >= CALL_SPEECH_SECONDS - 0.1, seconds


def test_speakers_are_searched_opted_out_and_deleted_after_a_confirmation(service, page):
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=60) as http:
        for speaker_id, name in (("cust-41", "Grace Hopper"), ("cust-43", "Alan Turing")):
            body = {"speaker_id": speaker_id, "display_name": name}
            http.post("/v1/speakers", json=body).raise_for_status()
    page.get_by_role("link", name="Speakers").click()
    page.get_by_label("Search by id or name").fill("hopper")
    page.keyboard.press("Enter")
    rows = page.locator("#speakers tbody tr")
    expect(rows).to_have_count(1)
    grace = page.locator('tr[data-speaker-id="cust-41"]')
    expect(grace.locator('[data-field="status"]')).to_have_text("PENDING_ENROLLMENT")
    lowest = page.evaluate(LOWEST_CONTRAST)
    assert lowest["ratio"] >= 4.5, lowest

    grace.get_by_role("button", name="Opt out").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Opt speaker cust-41 out")
    dialog.get_by_role("button", name="Opt out").click()
    expect(grace.locator('[data-field="status"]')).to_have_text("OPTED_OUT")

    page.goto(f"{service.url}/console/speakers?q=cust-43")
    alan = page.locator('tr[data-speaker-id="cust-43"]')
    alan.get_by_role("button", name="Delete").click()
    page.keyboard.press("Escape")  # changing one's mind keeps the speaker
    expect(dialog).to_be_hidden()
    expect(alan.get_by_role("button", name="Delete")).to_be_focused()
    alan.get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(alan).to_have_count(0)
    with httpx.Client(base_url=service.url, headers=headers, timeout=60) as http:
        assert http.get("/v1/speakers/cust-43").status_code == 404
        assert http.get("/v1/speakers/cust-41").json()["status"] == "OPTED_OUT"
