"""What every command's options share: the help layout, the argument types that refuse bad
values with a clear message, and the options of the commands that talk to a running
service (``--url``, ``--api-key``, ``--retries``, ``--timeout``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from biometrics.cli.exits import CommandError, Exit
from biometrics.client import Client, RetryPolicy
from biometrics.config import ClientSettings
from biometrics.errors import ConfigError


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (their examples keep their lines); an option that
    takes a value ends its help with its default, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, argparse.SUPPRESS) and action.nargs != 0
        if action.option_strings and shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


def service_options() -> argparse.ArgumentParser:
    """The options of a command that talks to a running service, as a parent parser."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("the service")
    group.add_argument(
        "--url",
        help="the service's base URL (default: $BIOMETRICS_URL, else http://127.0.0.1:8000)",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="API key, sent as a bearer token (default: $BIOMETRICS_API_KEY, if set)",
    )
    group.add_argument(
        "--retries",
        type=non_negative_int,
        default=3,
        metavar="N",
        help="retries after a connection error, a timeout or HTTP 429/502/503/504",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for each answer",
    )
    return parent


def client_settings(args: argparse.Namespace) -> ClientSettings:
    """The flags, else BIOMETRICS_URL and BIOMETRICS_API_KEY, else the defaults."""
    try:
        return ClientSettings.from_env(url=args.url, api_key=args.api_key)
    except ConfigError as error:
        raise CommandError(error.detail, Exit.USAGE) from None


def open_client(args: argparse.Namespace) -> Client:
    settings = client_settings(args)
    return Client(
        settings.url,
        api_key=settings.api_key,
        timeout=args.timeout,
        retry=RetryPolicy(retries=args.retries),
    )


def pair(shape: str) -> Callable[[str], tuple[str, str]]:
    """KEY=VALUE, both non-empty; ``shape`` names them in the error."""

    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key or not value:
            raise argparse.ArgumentTypeError(f"expected {shape}, got {text!r}")
        return key, value

    return parse


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def non_negative_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def score(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be from 0 to 100")
    return value


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # add_subparsers()
Run = Callable[[argparse.Namespace], int]


def add_command(
    commands: Commands,
    name: str,
    summary: str,
    run: Run | None = None,
    *,
    description: str = "",
    epilog: str | None = None,
    parents: tuple[argparse.ArgumentParser, ...] = (),
) -> argparse.ArgumentParser:
    """A (sub)command: ``summary`` is its line in the list of commands; ``run`` is called
    with the parsed arguments (none for a command that only holds actions)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description or summary[0].upper() + summary[1:] + ".",
        epilog=epilog,
        parents=list(parents),
        formatter_class=Formatter,
    )
    if run is not None:
        parser.set_defaults(run=run)
    return parser
