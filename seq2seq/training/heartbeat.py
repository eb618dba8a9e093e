"""A log line every ``train.heartbeat_seconds`` when nobody watches a progress bar.

With stderr redirected to a file (a scheduler, ``nohup``, ``> log``) the progress bar is off and the log
says something only every ``train.log_every_steps`` steps and at validations, so a slow run looks hung.
The heartbeat logs the step, the speed and the time left to the budget by the clock instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Heartbeat:
    """Call :meth:`beat` after every step; it logs when ``interval_s`` have passed since the last line."""

    def __init__(self, interval_s: float | None, enabled: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``enabled`` None: only when stderr is not a terminal (a terminal has the progress bar)."""
        on = (not sys.stderr.isatty()) if enabled is None else enabled
        self.interval_s = interval_s if on else None
        self.clock = clock
        self.start = self.last = clock()

    def due(self) -> bool:
        return self.interval_s is not None and self.clock() - self.last >= self.interval_s

    def beat(self, step: int, epoch: int, tokens_per_s: float, used: float, before_s: float = 0.0) -> bool:
        """Log when due; ``used`` (0 to 1) is the share of the budget spent, ``before_s`` the run's seconds
        before this process (a resumed run)."""
        if not self.due():
            return False
        self.last = self.clock()
        elapsed_s = before_s + self.last - self.start
        eta = f"{_duration(elapsed_s * (1 - used) / used)} left of the budget" if used > 0 else "ETA unknown"
        log.info("heartbeat: step %d epoch %d, %.0f target tokens/s, %.0f%% of the budget, %s", step, epoch,
                 tokens_per_s, 100 * used, eta)
        return True
