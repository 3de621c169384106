"""The whole soak: the service started, speakers enrolled, waves of calls with their faults
until the time is up, then the account of what went where."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa

from biometrics import bulk_enrollment
from biometrics.soak.calls import CallPlan, CallRun
from biometrics.soak.faults import Faults
from biometrics.soak.options import SoakError, SoakOptions
from biometrics.soak.proxy import TcpProxy
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.report import CallResult, Report, Tally, account, read_dead_letters
from biometrics.soak.service import (
    CLEAN_EXITS,
    Endpoint,
    Service,
    fresh_postgres,
    start_service,
    via_proxy,
)
from biometrics.soak.speech import Voice, load_voices

WEBHOOK_DRAIN_SECONDS = 120.0  # the service's retries span about 31 s by default


def run(options: SoakOptions, progress: Callable[[str], None] = print) -> Report:
    """The whole soak; raise SoakError if it cannot start."""
    if options.calls < 1 or options.speed <= 0 or options.minutes <= 0:
        raise SoakError("calls, minutes and speed must be positive")
    voices = load_voices(options.speech, max(options.speakers, 2), options.call_seconds)
    with contextlib.ExitStack() as stack:
        folder = options.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        webhook = stack.enter_context(WebhookSink(secrets.token_hex(16)))
        proxy = None
        if options.postgres_url is None:
            database_url = f"sqlite:///{folder / 'soak.db'}"
        else:
            database_url = stack.enter_context(fresh_postgres(options.postgres_url))
            if options.pg_restart_command is None:
                target = sa.make_url(database_url)
                proxy = stack.enter_context(
                    TcpProxy((target.host or "127.0.0.1", target.port or 5432))
                )
                database_url = via_proxy(database_url, proxy.port)
        service = start_service(folder, database_url, options.model, webhook)
        progress(
            f"service up at {service.url} (log: {service.log}); enrolling {len(voices)} speakers"
        )
        try:
            enroll(service, voices)
            report = asyncio.run(_soak(options, service, webhook, proxy, voices, progress))
        finally:
            exit_code = service.stop()
        report.server_exit_code = exit_code
        if exit_code not in CLEAN_EXITS:
            report.errors["server_exit"] = report.errors.get("server_exit", 0) + 1
    return report


def enroll(service: Endpoint, voices: Sequence[Voice]) -> None:
    speakers = {
        voice.speaker_id: [bulk_enrollment.Recording(path, path.name) for path in voice.enrollment]
        for voice in voices
    }
    with service.client() as api:
        outcomes = bulk_enrollment.run(api, speakers, overwrite=True)
    failed = [o.speaker_id for o in outcomes if o.status != "ENROLLED"]
    if failed:
        raise SoakError(f"could not enroll {', '.join(failed)} from their recordings")


async def _soak(
    options: SoakOptions,
    service: Service,
    webhook: WebhookSink,
    proxy: TcpProxy | None,
    voices: Sequence[Voice],
    progress: Callable[[str], None],
) -> Report:
    tally = Tally()
    faults = Faults(options, service, webhook, proxy, tally)
    began = time.monotonic()
    results: list[CallResult] = []
    waves = 0
    wave_seconds = options.call_seconds / options.speed
    while waves == 0 or time.monotonic() - began < options.minutes * 60:
        plans = [
            plan_call(voices, len(results) + i, faults.in_call(i)) for i in range(options.calls)
        ]
        runs = [CallRun(plan, service, options.speed, tally) for plan in plans]
        await asyncio.gather(*(r.play() for r in runs), faults.run(wave_seconds))
        results.extend(await asyncio.gather(*(asyncio.to_thread(r.read_back) for r in runs)))
        waves += 1
        progress(
            f"wave {waves}: {len(results)} calls, {time.monotonic() - began:.0f} s, "
            f"errors {sum(tally.error_kinds.values())}"
        )
    expected = {e for r in results for e in r.events}
    await asyncio.to_thread(_drain_webhooks, webhook, expected)
    dead = await asyncio.to_thread(read_dead_letters, service)
    report = account(results, tally, webhook, dead)
    report.waves = waves
    report.seconds = time.monotonic() - began
    return report


def plan_call(voices: Sequence[Voice], number: int, fault: str | None) -> CallPlan:
    """Call ``number``: genuine or an impostor, in turn across the in-call faults (which
    alternate with the call's place in its wave); the agent another voice."""
    claimed = voices[number % len(voices)]
    caller = claimed if number % 4 in (0, 3) else voices[(number + 1) % len(voices)]
    agent = voices[(number + 2) % len(voices)] if len(voices) > 2 else caller
    call_id = f"soak-{number:05d}-{uuid.uuid4().hex[:8]}"
    return CallPlan(call_id, caller, claimed, agent, fault)


def _drain_webhooks(webhook: WebhookSink, expected: set[str]) -> None:
    deadline = time.monotonic() + WEBHOOK_DRAIN_SECONDS
    while time.monotonic() < deadline and not expected <= webhook.received():
        time.sleep(0.5)
