"""A fault soak: live calls against a real ``biometrics serve`` while faults are injected,
and an account of where every frame, verdict and event went.

The soak starts the service as a subprocess (its own folder, auth on, an admin and a stream
key made with ``biometrics keys create``), a webhook receiver of its own, and enrolls
speakers from a folder of real speech over the REST API. Then, wave after wave until the
time is up, it plays ``calls`` two-participant calls at once over ``/ws/acs`` (the caller
claimed over REST as an enrolled speaker, genuinely or by an impostor; the agent
unclaimed), follows each call's server-sent events, and injects in every wave each fault
that is turned on:

- ``disconnect``: half the calls lose their socket without a close frame, then reconnect
  with the same call id, which resumes the call;
- ``malformed``: the other half get one bad message mid-call (bad JSON, bad base64, an
  unknown kind, an oversized message), and throwaway sockets get one each; every outcome
  (the socket kept, or closed with a code) is checked against the documented one;
- ``database``: PostgreSQL made unreachable for a few seconds, by switching off a TCP proxy
  in front of it or by a restart command (SQLite has no such fault);
- ``webhook``: the receiver refuses (503) or drops every delivery for a few seconds.

At the end the service is stopped with SIGTERM and the report counts frames sent and
processed, verdicts produced (over SSE) and persisted (the REST verdict history), events
delivered to the webhook receiver (unique ids) or dead-lettered, faults by kind, errors
(5xx, unexpected close codes, exceptions, a non-zero exit) and what was lost.

The package's modules, one job each: ``options`` (what to run), ``speech`` (the voices),
``receiver`` (the webhook receiver), ``proxy`` (the switchable TCP proxy), ``service`` (the
subprocess, its keys and database), ``malformed`` (bad messages and their documented
outcomes), ``calls`` (one call and its events), ``faults`` (the schedule), ``report`` (the
tally and the account), ``runner`` (the whole soak) and ``meter`` (the service process's
CPU and memory; the live-call benchmark plays its calls with the same modules).
"""

from __future__ import annotations

from biometrics.soak.malformed import EXPECTED_OUTCOMES
from biometrics.soak.options import FAULT_KINDS, SoakError, SoakOptions
from biometrics.soak.report import Report
from biometrics.soak.runner import run
from biometrics.soak.service import CLEAN_EXITS

__all__ = [
    "CLEAN_EXITS",
    "EXPECTED_OUTCOMES",
    "FAULT_KINDS",
    "Report",
    "SoakError",
    "SoakOptions",
    "run",
]
