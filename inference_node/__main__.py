"""``python -m inference_node``: wiring only. SIGTERM drains and stops with exit code 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from inference_node.config import NodeConfig, from_args
from inference_node.file_watch import FileWatcher
from inference_node.node import InferenceNode, ref_for_file

logger = logging.getLogger("inference_node")


async def serve(config: NodeConfig) -> None:
    node = InferenceNode(config)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher_task = None
    if config.model_path is not None:
        ref = ref_for_file(config.model_path, name=config.model_name)
        node.agent.request(ref)
        if config.watch:
            watcher = FileWatcher(
                config.model_path, node.agent, name=ref.name, interval_s=config.watch_interval_s
            )
            watcher.remember(ref)
            watcher_task = asyncio.create_task(watcher.run())
    await stop.wait()
    logger.info("stop signal received, draining")
    if watcher_task is not None:
        watcher_task.cancel()
    await node.stop()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        config = from_args(argv)
    except ValueError as exc:
        print(f"inference-node: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
