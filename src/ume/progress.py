"""One progress display for a whole run that stays readable in a log file.

On a terminal it is a single tqdm bar (the run's steps, with what is running now and its rate as the postfix),
never nested bars; when stderr is not a terminal (a log file, CI, `nohup`), it writes one plain line when the
status changes at most every `every_s` seconds and at each finished step, with no carriage returns or escape
codes, so `tail -f` and `grep` work on it.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from tqdm.auto import tqdm


class RunProgress:
    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True, every_s: float = 30.0,
                 stream: IO[str] | None = None) -> None:
        self.total, self.desc, self.unit, self.enabled, self.every_s = total, desc, unit, enabled, every_s
        self.stream = stream or sys.stderr
        self.done, self.status_text, self._last = 0, "", 0.0
        self._t0 = time.perf_counter()
        self.tty = enabled and self.stream.isatty()
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True) if self.tty else None

    def status(self, text: str) -> None:
        """What is running now (e.g. "K700 qry gen: 120/433 items, 1,234 tok/s")."""
        self.status_text = text
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.enabled and time.perf_counter() - self._last >= self.every_s:
            self._line()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled:
            self._line()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self._t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        when = f"{elapsed:.0f}s" + ("" if eta is None else f", eta {eta:.0f}s")
        print(f"{self.desc}: {self.done}/{self.total} {self.unit}s ({when}) {self.status_text}".rstrip(),
              file=self.stream, flush=True)
        self._last = time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
