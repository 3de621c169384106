"""The faults of each wave outside the calls, on a schedule: the database cut off, the
webhook receiver down, throwaway sockets with bad input; and which call gets which fault."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from biometrics import simulator
from biometrics.soak.calls import CALLER
from biometrics.soak.malformed import MALFORMED_KINDS, THROWAWAY_KINDS, bad_message, probe
from biometrics.soak.options import SoakOptions
from biometrics.soak.proxy import TcpProxy
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.report import Tally
from biometrics.soak.service import Service
from biometrics.soak.speech import SAMPLE_RATE
from biometrics.streaming.protocol import AudioFrame, encode_audio, encode_metadata

DATABASE_FAULT_AT = 0.3
WEBHOOK_FAULT_AT = 0.5
THROWAWAY_AT = 0.75  # after the database outage, so that the outcomes are the sockets' own


async def throwaway(service: Service, kind: str, tally: Tally) -> None:
    """A socket of its own that gets one bad message, before or after its metadata."""
    call_id = f"soak-junk-{uuid.uuid4().hex[:12]}"
    frame = AudioFrame(datetime.now(UTC), CALLER, bytes(640), True)
    headers = {"x-ms-call-connection-id": call_id, "Authorization": f"Bearer {service.stream_key}"}
    try:
        async with connect(service.socket_url, additional_headers=headers, proxy=None) as websocket:
            if not kind.endswith("_first"):
                await websocket.send(encode_metadata(simulator.call_format(SAMPLE_RATE, call_id)))
                await websocket.send(encode_audio(frame))
            await websocket.send(bad_message(kind, frame))
            tally.faults["malformed"] += 1
            tally.outcome(kind, await probe(websocket), "on a throwaway socket")
    except (OSError, ConnectionClosed, TimeoutError) as error:
        tally.failure(f"throwaway socket {kind}", error)


class Faults:
    """The faults of one wave, each at its moment of the wave's audio."""

    def __init__(
        self,
        options: SoakOptions,
        service: Service,
        webhook: WebhookSink,
        proxy: TcpProxy | None,
        tally: Tally,
    ) -> None:
        self._options = options
        self._service = service
        self._webhook = webhook
        self._proxy = proxy
        self._tally = tally
        self._waves = 0

    def enabled(self, kind: str) -> bool:
        return kind in self._options.faults

    def in_call(self, index: int) -> str | None:
        """Half the calls are disconnected, the other half get a malformed message."""
        if index % 2 == 0 and self.enabled("disconnect"):
            return "disconnect"
        if index % 2 == 1 and self.enabled("malformed"):
            return MALFORMED_KINDS[(self._waves + index // 2) % len(MALFORMED_KINDS)]
        return None

    async def run(self, duration: float) -> None:
        """This wave's faults outside the calls: database, webhook receiver, throwaways."""
        self._waves += 1
        await asyncio.gather(
            self._later(duration * DATABASE_FAULT_AT, self._database),
            self._later(duration * WEBHOOK_FAULT_AT, self._webhook_down),
            self._later(duration * THROWAWAY_AT, self._throwaways),
        )

    async def _later(self, delay: float, fault: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(delay)
        await fault()

    async def _database(self) -> None:
        if not self.enabled("database") or self._options.postgres_url is None:
            return
        self._tally.faults["database"] += 1
        command = self._options.pg_restart_command
        if command is not None:
            done = await asyncio.to_thread(
                subprocess.run, shlex.split(command), capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                self._tally.error("exception", f"{command!r} exited {done.returncode}")
            return
        assert self._proxy is not None
        self._proxy.down()
        await asyncio.sleep(self._options.database_outage_seconds)
        self._proxy.up()

    async def _webhook_down(self) -> None:
        if not self.enabled("webhook"):
            return
        self._tally.faults["webhook"] += 1
        self._webhook.mode = "refuse" if self._waves % 2 else "close"
        await asyncio.sleep(self._options.webhook_outage_seconds)
        self._webhook.mode = "up"

    async def _throwaways(self) -> None:
        if self.enabled("malformed"):
            await asyncio.gather(
                *(throwaway(self._service, k, self._tally) for k in THROWAWAY_KINDS)
            )
