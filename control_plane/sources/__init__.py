"""Metric sources canary analysis reads: the nodes' GetStats RPC, or Prometheus."""
