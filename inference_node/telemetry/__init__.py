"""What the node measures about itself, below the parts that use it.

``stats`` (GetStats windows), ``metrics`` (Prometheus), ``device`` (device choice and GPU
telemetry), ``watchdog`` (device heartbeat) and ``rpc_count`` (every accepted RPC and how it
ended).
"""
