"""``python -m control_plane --consul HOST:PORT``: wiring only. SIGTERM drains, exit code 0."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from control_plane.app import AppConfig, ControlPlane
from control_plane.consul.watches import DEFAULT_MAX_STREAMS
from control_plane.sources.nodes import DEFAULT_TIMEOUT_S as DEFAULT_STATS_TIMEOUT_S
from control_plane.sources.prometheus import node_label_problem
from yolofleet.consul.aiothread import DEFAULT_MAX_POLLS, DEFAULT_MAX_WORKERS
from yolofleet.keys import DEFAULT_PREFIX

logger = logging.getLogger("control_plane")


def build_parser() -> argparse.ArgumentParser:
    """The command line's flags (``parse_args`` adds the checks across them)."""
    parser = argparse.ArgumentParser(prog="control-plane", description=__doc__)
    parser.add_argument("--consul", required=True, help="Consul address, HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind and advertise")
    parser.add_argument("--port", type=int, default=50070, help="gRPC port (0: any free port)")
    parser.add_argument(
        "--artifact-port",
        type=int,
        default=8081,
        help="artifact HTTP port (0: any free port, but then registered URIs die with the process)",
    )
    parser.add_argument(
        "--artifact-url",
        type=_base_url,
        default=None,
        help="base URL nodes reach the artifact port at, written into registered model URIs "
        "(default: http://HOST:PORT, this machine's name for a wildcard --host)",
    )
    parser.add_argument("--artifact-dir", type=Path, default=None, help="published artifacts")
    parser.add_argument("--interval", type=float, default=2.0, help="controller tick, seconds")
    parser.add_argument(
        "--stats-timeout",
        type=float,
        default=DEFAULT_STATS_TIMEOUT_S,
        help="seconds each node has to answer GetStats before an assessment leaves it out "
        f"(default {DEFAULT_STATS_TIMEOUT_S:g})",
    )
    parser.add_argument("--key-prefix", default=DEFAULT_PREFIX, help="Consul key prefix")
    parser.add_argument(
        "--leader-ttl",
        type=float,
        default=10.0,
        help="leader session TTL and lock-delay, seconds (Consul's minimum is 10)",
    )
    parser.add_argument(
        "--prometheus-url",
        type=_base_url,
        default=None,
        help="read canary figures from this Prometheus (default: each node's GetStats RPC)",
    )
    parser.add_argument(
        "--prometheus-node-label",
        default="node_id",
        help="the label Prometheus gives a node's series naming its node id (default: node_id)",
    )
    parser.add_argument(
        "--prometheus-selector",
        default="",
        help="extra label matchers restricting series to a group, {group} substituted, "
        'e.g. \'job="yolofleet",group="{group}"\' (default: none)',
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve this replica's Prometheus metrics on this port at /metrics "
        "(0: any free port; default: no metrics endpoint)",
    )
    parser.add_argument(
        "--max-watch-streams",
        type=int,
        default=DEFAULT_MAX_STREAMS,
        help="WatchRollout streams (ctl status --watch, intents waiting) served at once; "
        f"more are refused with RESOURCE_EXHAUSTED (default: {DEFAULT_MAX_STREAMS})",
    )
    parser.add_argument(
        "--blocking-threads",
        type=int,
        default=DEFAULT_MAX_WORKERS,
        help="threads Consul calls, registry reads and file hashing share "
        f"(default: {DEFAULT_MAX_WORKERS})",
    )
    parser.add_argument(
        "--poll-threads",
        type=int,
        default=DEFAULT_MAX_POLLS,
        help="threads Consul blocking queries share, one per group being watched "
        f"(default: {DEFAULT_MAX_POLLS})",
    )
    return parser


def _base_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise argparse.ArgumentTypeError(
            f"must be an http(s)://HOST[:PORT][/PATH] URL, not {text!r}"
        )
    return text.rstrip("/")


def parse_args(argv: Sequence[str] | None = None) -> AppConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error(f"--interval {args.interval} must be above 0 seconds")
    if not args.stats_timeout > 0:
        parser.error(f"--stats-timeout {args.stats_timeout} must be above 0 seconds")
    if args.leader_ttl <= 0:
        parser.error(f"--leader-ttl {args.leader_ttl} must be above 0 seconds")
    if problem := node_label_problem(args.prometheus_node_label):
        parser.error(f"--prometheus-node-label: {problem}")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        parser.error(f"--metrics-port {args.metrics_port} must be a port, 0 to 65535")
    for flag, value in (
        ("--max-watch-streams", args.max_watch_streams),
        ("--blocking-threads", args.blocking_threads),
        ("--poll-threads", args.poll_threads),
    ):
        if value < 1:
            parser.error(f"{flag} {value} must be 1 or more")
    return AppConfig(
        consul=args.consul,
        host=args.host,
        port=args.port,
        artifact_port=args.artifact_port,
        artifact_dir=args.artifact_dir,
        artifact_url=args.artifact_url,
        interval_s=args.interval,
        stats_timeout_s=args.stats_timeout,
        key_prefix=args.key_prefix,
        prometheus_url=args.prometheus_url,
        prometheus_node_label=args.prometheus_node_label,
        prometheus_selector=args.prometheus_selector,
        metrics_port=args.metrics_port,
        max_watch_streams=args.max_watch_streams,
        blocking_threads=args.blocking_threads,
        poll_threads=args.poll_threads,
        leader_ttl_s=args.leader_ttl,
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
