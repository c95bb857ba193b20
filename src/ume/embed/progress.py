"""One progress bar for a whole `ume embed` run, however many processes embed it.

Rank 0 (or the Ray driver) shows items done across every rank, items/s, generated tokens/s in gen mode and the
ETA; the bar starts at the rows already done by an earlier run, so the rate and ETA count this run's work only.
Other torchrun ranks publish their counts in `chunks/.progress-<rank>.json` after each chunk, and rank 0 reads
them every `poll_s` on a background thread (no collective call, so ranks never wait for each other).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tqdm.auto import tqdm

from ume.io import write_json


class Progress:
    def __init__(self, directory: Path, total: int, initial: int, rank: int = 0, world: int = 1,
                 desc: str = "embed", tokens: bool = False, enabled: bool = True, poll_s: float = 1.0) -> None:
        self.dir, self.rank, self.world, self.tokens, self.poll_s = directory, rank, world, tokens, poll_s
        self.items = self.generated = 0  # this process's counts in this run
        self.done = 0  # items done in this run across every rank, as last shown
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="item", dynamic_ncols=True,
                        disable=not enabled or rank != 0)
        self._thread = None
        if rank == 0 and world > 1:
            self._thread = threading.Thread(target=self._poll, name="ume-embed-progress", daemon=True)
            self._thread.start()

    def add(self, items: int, tokens: int = 0) -> None:
        """Count a finished chunk of this process."""
        self.items += items
        self.generated += tokens
        if self.rank != 0:
            write_json(self.dir / f".progress-{self.rank}.json", {"items": self.items, "tokens": self.generated})
            return
        self._refresh()

    def _others(self) -> tuple[int, int]:
        items = tokens = 0
        for r in range(1, self.world):
            try:
                got = json.loads((self.dir / f".progress-{r}.json").read_text())
            except (OSError, ValueError):
                continue
            items, tokens = items + int(got["items"]), tokens + int(got["tokens"])
        return items, tokens

    def _refresh(self) -> None:
        items, tokens = self._others() if self.world > 1 else (0, 0)
        with self._lock:
            items, tokens = items + self.items, tokens + self.generated
            if self.tokens:
                self.bar.set_postfix_str(f"{tokens / max(time.perf_counter() - self._t0, 1e-9):,.0f} tok/s",
                                         refresh=False)
            self.bar.update(items - self.done)
            self.done = items

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.rank == 0:
            self._refresh()
            for p in self.dir.glob(".progress-*.json"):
                p.unlink(missing_ok=True)
        self.bar.close()
