"""Consul I/O: the store (rollout documents, targets, node reports), the leader lock, the
cluster epoch, the shared watches, and the rollout document's encoding.
"""
