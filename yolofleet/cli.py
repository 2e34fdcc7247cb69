"""The ``yolofleet`` umbrella command: one subcommand (verb) per entry in :data:`VERBS`.

Each verb is a :class:`Verb`: its name, a one-line help, a function adding its arguments, and a
function running it that returns the exit code. Adding a verb (``up``, ``demo``, ``load``,
``detect``) means writing those two functions and appending one ``Verb`` to :data:`VERBS`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verb:
    """One ``yolofleet`` subcommand."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _dev_consul_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8500, help="port to listen on (0: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the KV store (and sessions) here across restarts; in memory when omitted",
    )


def _run_dev_consul(args: argparse.Namespace) -> int:
    from yolofleet.consul.devserver import DevConsul

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with DevConsul(host=args.host, port=args.port, data_dir=args.data_dir):
            while not stop.wait(1.0):
                pass
            logger.info("dev consul stopping signal=%s", signal.Signals(received[0]).name)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


VERBS: tuple[Verb, ...] = (
    Verb(
        name="dev-consul",
        help="run the embedded dev Consul (KV, blocking queries, sessions) over HTTP",
        add_arguments=_dev_consul_arguments,
        run=_run_dev_consul,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The ``yolofleet`` argument parser with every verb in :data:`VERBS`."""
    parser = argparse.ArgumentParser(prog="yolofleet", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        sub = verbs.add_parser(verb.name, help=verb.help, description=verb.help)
        verb.add_arguments(sub)
        sub.set_defaults(run=verb.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``yolofleet`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
