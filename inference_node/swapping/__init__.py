"""Replacing the live model: the hot-swap slot and everything that fills it.

``slot`` (the atomic slot itself), ``agent`` (runs swaps; ``policy`` decides, ``trial`` runs
the gates from ``validate``, ``waiters`` wake callers), ``loader`` (ref to warmed detector) with
``artifacts``, ``fetch_copy``, ``fetch_limits`` and ``artifact_cache`` (file/HTTP fetch into a
bounded verified cache), ``file_watch`` (swap on model-file change) and ``executors``.
"""
