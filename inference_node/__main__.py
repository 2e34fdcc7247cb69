"""``python -m inference_node``: wiring only. SIGTERM drains and stops with exit code 0.

On SIGTERM health goes NOT_SERVING at once, the fleet link closes, then ``InferenceNode.stop``
stops the gRPC server (GOAWAY; accepted calls finish) before the queue drains.
"""

from __future__ import annotations

from yolofleet.offline import quiet_openmp

quiet_openmp()  # before anything loads torch: libgomp reads its environment once

import asyncio  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from inference_node.config import NodeConfig  # noqa: E402
from inference_node.config_args import from_args  # noqa: E402
from inference_node.link.fleet import ConsulCatalog, FleetLink  # noqa: E402
from inference_node.node import InferenceNode  # noqa: E402
from inference_node.node_parts import ref_for_file  # noqa: E402
from inference_node.swapping.file_watch import FileWatcher  # noqa: E402
from yolofleet.consul import ConsulClient, ConsulSettings  # noqa: E402
from yolofleet.keys import KeyLayout  # noqa: E402

logger = logging.getLogger("inference_node")


async def serve(config: NodeConfig) -> bool:
    """Serves until SIGTERM/SIGINT, then stops; True when every worker thread finished."""
    client = None
    catalog = None
    if config.fleet is not None:
        client = ConsulClient(ConsulSettings.from_env(address=config.fleet.consul))
        catalog = ConsulCatalog(client, KeyLayout(config.fleet.key_prefix))
    node = InferenceNode(config, catalog=catalog)
    await node.start()
    # Everything alive now lives as long as the process: keep it out of every later garbage
    # collection, so the one that frees a swapped-out model (and each automatic one) scans
    # only what was made since, ~2 ms instead of ~160 ms holding the GIL against serving.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    link = None
    if client is not None and config.fleet is not None:
        link = FleetLink(node, client, config.fleet)
        link.start()
    watcher_task = _serve_file(node, config)
    await stop.wait()
    logger.info("stop signal received, draining")
    await node.begin_shutdown()
    if watcher_task is not None:
        watcher_task.cancel()
    if link is not None:
        await link.close()
    await node.stop()
    return node.threads_finished


def _serve_file(node: InferenceNode, config: NodeConfig) -> asyncio.Task[None] | None:
    """Standalone mode: serve ``--model``, and with ``--watch`` reload it when it changes."""
    if config.model_path is None:
        return None
    ref = ref_for_file(config.model_path, name=config.model_name)
    node.agent.request(ref)
    if not config.watch:
        return None
    watcher = FileWatcher(
        config.model_path, node.agent, name=ref.name, interval_s=config.watch_interval_s
    )
    watcher.remember(ref)
    return asyncio.create_task(watcher.run(), name="file-watch")


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
    if not asyncio.run(serve(config)):
        # A worker thread is stuck (e.g. a load in the kernel); interpreter exit would join it
        # and turn a clean stop into the orchestrator's SIGKILL at the end of the grace period.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
