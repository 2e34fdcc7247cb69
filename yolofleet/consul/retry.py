"""Retry helpers for the long-running Consul loops: jittered backoff, once-per-error logging."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """Exponential backoff with "equal jitter": half the step is fixed, half is random."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        step = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return step / 2 + rng.uniform(0.0, step / 2)


class FailureLog:
    """Logs a failure once per distinct error, not once per retry, and logs the recovery."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self._what = what
        self._last: str | None = None
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        """Record one failed attempt; log it at ERROR if it differs from the previous one."""
        self.failures += 1
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last:
            self._logger.error("%s failed attempt=%d error=%s", self._what, self.failures, text)
            self._last = text
        else:
            self._logger.debug("%s failed again attempt=%d", self._what, self.failures)

    def succeeded(self) -> None:
        """Record a success; log the recovery if there were failures before it."""
        if self.failures:
            self._logger.info("%s recovered after failures=%d", self._what, self.failures)
        self._last = None
        self.failures = 0
