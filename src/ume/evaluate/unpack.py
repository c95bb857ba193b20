"""`ume data unpack`: extract TIGER-Lab/MMEB-V2's media archives in place, as the reference's script does.

TIGER-AI-Lab/VLM2Vec `experiments/public/data/download_data.sh` clones the repo and runs, inside it:
`tar -xzvf mmeb_v1.tar.gz; mv MMEB/* .` in image-tasks/; `tar -xzvf video_cls.tar.gz -C video_cls`,
`tar -xzvf video_mret.tar.gz`, `tar -xzvf video_ret.tar.gz -C video_ret` and
`cat video_qa.tar.gz-0{0..4} | tar -xzv` in video-tasks/frames/. This does the same with Python's tarfile
(no tar, no shell), streaming (the split video_qa parts are read as one stream), one archive at a time; an
archive is marked done only after it is fully extracted, so an interrupted run redoes just that archive.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Archive:
    """One archive of the media repo: its parts, where it is extracted, and a leading directory dropped."""

    parts: tuple[str, ...]  # relative to the repo root; several parts are concatenated (split archives)
    into: str  # extraction directory, relative to the repo root
    provides: str  # the media directory it fills (what the loaders read)
    strip: str = ""  # leading member directory moved up (mmeb_v1.tar.gz holds MMEB/<Task>/...)


FRAMES = "video-tasks/frames"
ARCHIVES = (
    Archive(("image-tasks/mmeb_v1.tar.gz",), "image-tasks", "image-tasks", strip="MMEB/"),
    Archive((f"{FRAMES}/video_cls.tar.gz",), f"{FRAMES}/video_cls", f"{FRAMES}/video_cls"),
    Archive((f"{FRAMES}/video_mret.tar.gz",), FRAMES, f"{FRAMES}/video_mret"),
    Archive((f"{FRAMES}/video_ret.tar.gz",), f"{FRAMES}/video_ret", f"{FRAMES}/video_ret"),
    Archive(tuple(f"{FRAMES}/video_qa.tar.gz-0{k}" for k in range(5)), FRAMES, f"{FRAMES}/video_qa"),
)
DONE = ".ume-unpacked"


class _Concat(io.RawIOBase):
    """Several files read as one stream (the `cat part-0* |` of the script)."""

    def __init__(self, paths: list[Path], progress: Callable[[int], Any]) -> None:
        self._files: Iterator[Path] = iter(paths)
        self._cur: IO[bytes] | None = None
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while True:
            if self._cur is None:
                nxt = next(self._files, None)
                if nxt is None:
                    return 0
                self._cur = open(nxt, "rb")  # noqa: SIM115 - closed when exhausted
            n = self._cur.readinto(buf)
            if n:
                self._progress(n)
                return n
            self._cur.close()
            self._cur = None


def _members(tar: tarfile.TarFile, strip: str) -> Iterator[tarfile.TarInfo]:
    for m in tar:
        if strip and m.name.startswith(strip):
            m.name = m.name[len(strip):]
        if m.name and m.name not in (".", strip.rstrip("/")):
            yield m


def unpack_media(repo_dir: str | Path, progress: bool = True) -> list[str]:
    """Extract every archive of a TIGER-Lab/MMEB-V2 download that is present and not yet extracted; return
    what was extracted. Members are extracted with tarfile's `data` filter (no absolute paths, no links out)."""
    root = Path(repo_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    done = root / DONE
    finished = set(done.read_text().split()) if done.is_file() else set()
    extracted = []
    for arc in ARCHIVES:
        paths = [root / p for p in arc.parts]
        if arc.parts[0] in finished or not all(p.is_file() for p in paths):
            continue
        target = root / arc.into
        target.mkdir(parents=True, exist_ok=True)
        total = sum(p.stat().st_size for p in paths)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"unpack {Path(arc.parts[0]).name}",
                  disable=not progress) as bar:
            stream = io.BufferedReader(_Concat(paths, bar.update), buffer_size=2**20)
            with tarfile.open(fileobj=stream, mode="r|gz") as tar:
                for member in _members(tar, arc.strip):
                    tar.extract(member, target, filter="data")
        finished.add(arc.parts[0])
        done.write_text("\n".join(sorted(finished)) + "\n")
        extracted.append(arc.parts[0])
    return extracted
