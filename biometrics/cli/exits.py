"""What the command's exit status says: one number for each kind of outcome, so that a
script can tell "the voice was rejected" from "the key is wrong" or "the service is down"
without reading the text."""

from __future__ import annotations

import enum

from biometrics.client import ApiError, ClientError, TransportError


class Exit(enum.IntEnum):
    OK = 0
    # Done, but the answer is no: a voice not accepted, a speaker not enrolled, a call the
    # service closed, a deletion not confirmed.
    FAILED = 1
    # Nothing was done: bad arguments or configuration, an unreadable file, a database,
    # model or port the service cannot use.
    USAGE = 2
    NOT_FOUND = 3  # no such speaker, call or API key
    AUTH = 4  # no usable API key (HTTP 401), or its role does not allow this (403)
    UNREACHABLE = 5  # no answer from the service, even after the retries
    REFUSED = 6  # the service refused or failed the request for another reason
    INTERRUPTED = 130  # Ctrl-C, as shells count it (128 + SIGINT)


EPILOG = """\
Exit status: 0 success; 1 done, but the answer is no (verify: not ACCEPT; enroll: a speaker
not enrolled); 2 usage or start-up error; 3 not found; 4 no usable API key, or its role does
not allow it; 5 the service did not answer; 6 the service refused the request; 130
interrupted."""


class CommandError(Exception):
    """The command cannot go on: ``message`` for stderr, ``status`` to exit with."""

    def __init__(self, message: str, status: Exit) -> None:
        super().__init__(message)
        self.status = status


def client_failure(error: ClientError, url: str) -> CommandError:
    """What a failed request means for the person running the command."""
    if isinstance(error, TransportError):
        return CommandError(
            f"cannot reach the service at {url}: {error} (is it running? --url or "
            "BIOMETRICS_URL says where)",
            Exit.UNREACHABLE,
        )
    if not isinstance(error, ApiError):
        return CommandError(str(error), Exit.REFUSED)
    # The id the service's log lines of this request carry, to find them.
    said = f"{error} [request {error.request_id}]" if error.request_id else str(error)
    if error.status in (401, 403):
        hint = (
            "pass a key with --api-key or BIOMETRICS_API_KEY"
            if error.status == 401
            else "use a key whose role allows it (biometrics keys create --role ...)"
        )
        return CommandError(f"{said} ({hint})", Exit.AUTH)
    if error.status == 404:
        return CommandError(said, Exit.NOT_FOUND)
    return CommandError(said, Exit.REFUSED)
