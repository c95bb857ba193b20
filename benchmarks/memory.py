"""Peak resident memory of a block, for the benchmark scripts (imported as a sibling module)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psutil


class PeakRSS:
    """Peak resident memory over a block (sampled every 5 ms); `growth` is the peak minus the start."""

    def __enter__(self) -> PeakRSS:
        self.proc = psutil.Process(os.getpid())
        self.base = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: Any) -> None:
        self.running = False
        self.thread.join()
        self.growth = self.peak - self.base
