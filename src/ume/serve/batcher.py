"""Dynamic batching: concurrent requests merged into one `Encoder.encode` call, behind a bounded queue.

One worker thread owns the encoder. It takes the oldest waiting request, then every waiting request with the
same settings (mode, samples, decoding) until `max_batch_items`, waiting at most `max_wait_s` for companions
when it is idle, and encodes them in one call: in disc mode one length-sorted forward per micro-batch, in gen
mode the continuous-batching decoder (a finished sequence frees its slot for a waiting one, whichever request
it came from). Results are split back per request; a request's vectors do not depend on its batch-mates
(the encoder's guarantee, tested). The queue is bounded in items: a full queue refuses new work at once
(`QueueFull`, answered 503 + Retry-After), never an unbounded backlog.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class QueueFull(Exception):
    def __init__(self, retry_after_s: int, depth: int) -> None:
        super().__init__(f"queue full ({depth} items waiting)")
        self.retry_after_s, self.depth = retry_after_s, depth


@dataclass
class Job:
    items: list[Any]
    key: Hashable  # requests merge only with the same key (mode, samples, decoding settings)
    seeds: list[int] | None = None  # per-item seeds, or None
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)
    started: float | None = None
    on_done: Callable[[], None] | None = None  # e.g. remove the request's temp files


def split_result(res: Any, sizes: Sequence[int]) -> list[Any]:
    """Cut one EncodeResult over concatenated items into one per job: per-item arrays and lists sliced,
    errors re-indexed; other fields (mode, settings) shared. Works for fields added later too."""
    total = sum(sizes)
    out, start = [], 0
    for n in sizes:
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(res):
            value = getattr(res, f.name)
            if f.name == "errors":
                changes["errors"] = [
                    dataclasses.replace(e, index=e.index - start,
                                        reason=re.sub(r"^item \d+", f"item {e.index - start}", e.reason))
                    for e in value if start <= e.index < start + n]
            elif (isinstance(value, np.ndarray) and value.ndim and value.shape[0] == total) or (
                    isinstance(value, list) and len(value) == total):
                changes[f.name] = value[start:start + n]
        out.append(dataclasses.replace(res, **changes))
        start += n
    return out


class Batcher:
    """A bounded queue and the one worker thread that calls `encode(items, key, seeds)`."""

    def __init__(self, encode: Callable[[list[Any], Hashable, list[int] | None], Any], *, batching: bool = True,
                 max_batch_items: int = 32, max_wait_s: float = 0.005, max_queue_items: int = 256,
                 on_batch: Callable[[Hashable, int, int, float], None] | None = None) -> None:
        self._encode = encode
        self.batching = batching
        self.max_batch_items = max(1, max_batch_items)
        self.max_wait_s = max_wait_s
        self.max_queue_items = max_queue_items
        self._on_batch = on_batch  # (key, n_requests, n_items, seconds)
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._pending_items = 0
        self._stopped = False
        self._item_s = 0.05  # running estimate of seconds per item, for Retry-After
        self._thread = threading.Thread(target=self._loop, name="ume-batcher", daemon=True)
        self._thread.start()

    # --- what the app sees ---------------------------------------------------------------------------
    @property
    def pending_items(self) -> int:
        return self._pending_items

    @property
    def pending_requests(self) -> int:
        return len(self._queue)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def submit(self, job: Job) -> Future:
        with self._cond:
            if self._stopped:
                raise RuntimeError("the batcher is stopped")
            if self._pending_items and self._pending_items + len(job.items) > self.max_queue_items:
                wait = math.ceil(self._item_s * self._pending_items)
                raise QueueFull(max(1, wait), self._pending_items)
            self._queue.append(job)
            self._pending_items += len(job.items)
            self._cond.notify()
        return job.future

    def withdraw(self, job: Job) -> None:
        """Its request gave up (timed out): a job still queued leaves the queue now, so it neither runs nor holds
        queue room a new request could have; one already running finishes and its answer is dropped."""
        with self._cond:
            if not job.future.cancel():
                return
            for i, queued in enumerate(self._queue):
                if queued is job:
                    del self._queue[i]
                    self._pending_items -= len(job.items)
                    self._finish(job)
                    return

    def close(self, timeout: float | None = 10.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout)
        for job in self._queue:
            job.future.cancel()
            self._finish(job)

    # --- the worker ----------------------------------------------------------------------------------
    def _claim(self, job: Job) -> bool:
        """Remove `job` from the count; False if its request already gave up (timed out)."""
        self._pending_items -= len(job.items)
        if job.future.set_running_or_notify_cancel():
            job.started = time.perf_counter()
            return True
        self._finish(job)
        return False

    def _take(self) -> list[Job] | None:
        with self._cond:
            while True:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return None
                first = self._queue.popleft()
                if self._claim(first):
                    break
            batch, n = [first], len(first.items)
            if not self.batching:
                return batch
            deadline = time.monotonic() + self.max_wait_s
            while n < self.max_batch_items:
                for job in list(self._queue):
                    if job.key == first.key and n + len(job.items) <= self.max_batch_items:
                        self._queue.remove(job)
                        if self._claim(job):
                            batch.append(job)
                            n += len(job.items)
                left = deadline - time.monotonic()
                if n >= self.max_batch_items or left <= 0 or self._stopped:
                    break
                self._cond.wait(left)
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run(batch)

    def _run(self, batch: list[Job]) -> None:
        items = [it for job in batch for it in job.items]
        seeded = any(job.seeds is not None for job in batch)
        seeds = None
        if seeded:
            rng = np.random.default_rng()
            seeds = [s for job in batch
                     for s in (job.seeds if job.seeds is not None else rng.integers(0, 2**62, len(job.items)).tolist())]
        start = time.perf_counter()
        try:
            res = self._encode(items, batch[0].key, seeds)
        except Exception as e:
            if len(batch) > 1:  # find the request that breaks the call; the others still get answers
                for job in batch:
                    self._run([job])
                return
            batch[0].future.set_exception(e)
            self._finish(batch[0])
            return
        seconds = time.perf_counter() - start
        self._item_s = 0.8 * self._item_s + 0.2 * seconds / max(1, len(items))
        if self._on_batch is not None:
            self._on_batch(batch[0].key, len(batch), len(items), seconds)
        for job, part in zip(batch, split_result(res, [len(j.items) for j in batch]), strict=True):
            job.future.set_result(part)
            self._finish(job)

    @staticmethod
    def _finish(job: Job) -> None:
        if job.on_done is not None:
            try:
                job.on_done()
            finally:
                job.on_done = None
