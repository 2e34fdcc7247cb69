"""``python -m control_plane --consul HOST:PORT``: wiring only. SIGTERM drains, exit code 0."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from control_plane.app import AppConfig, ControlPlane
from yolofleet.keys import DEFAULT_PREFIX

logger = logging.getLogger("control_plane")


def parse_args(argv: Sequence[str] | None = None) -> AppConfig:
    parser = argparse.ArgumentParser(prog="control-plane", description=__doc__)
    parser.add_argument("--consul", required=True, help="Consul address, HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind and advertise")
    parser.add_argument("--port", type=int, default=50070, help="gRPC port (0: any free port)")
    parser.add_argument("--artifact-port", type=int, default=0, help="artifact HTTP port")
    parser.add_argument("--artifact-dir", type=Path, default=None, help="published artifacts")
    parser.add_argument("--interval", type=float, default=2.0, help="controller tick, seconds")
    parser.add_argument("--key-prefix", default=DEFAULT_PREFIX, help="Consul key prefix")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error(f"--interval {args.interval} must be above 0 seconds")
    return AppConfig(
        consul=args.consul,
        host=args.host,
        port=args.port,
        artifact_port=args.artifact_port,
        artifact_dir=args.artifact_dir,
        interval_s=args.interval,
        key_prefix=args.key_prefix,
    )


async def serve(config: AppConfig) -> None:
    plane = ControlPlane(config)
    await plane.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logger.info("stop signal received, draining")
    await plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    config = parse_args(argv)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
