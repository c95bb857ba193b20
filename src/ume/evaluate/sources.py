"""Where a task's files are, and a record of what was read.

A repo is found either in a local tree of hub snapshots, `ROOT/<owner>/<repo>` (what
`huggingface-cli download <owner>/<repo> --repo-type dataset --local-dir ROOT/<owner>/<repo>` writes), or,
without a root, in the Hugging Face hub cache through `huggingface_hub`'s own offline lookup. A split's files
are resolved by `datasets` itself (the README's `configs:` or its default patterns: `data/`, `<split>.jsonl`,
`<split>-*.parquet`, ...), exactly as `datasets.load_dataset(repo, config, split=split)` resolves them for the
reference harness; the rows are then read in place (no Arrow copy of a 100 GB benchmark).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ume.evaluate.tasks import MMEB_MEDIA
from ume.evaluate.unpack import ARCHIVES
from ume.io import iter_json_lines

Origin = Literal["data-root", "hf-cache"]
HASH_LIMIT = 64 * 2**20  # annotation files up to 64 MiB are hashed; larger ones are recorded by size
SPLIT_ALIASES = {"val": "validation", "validation": "val", "dev": "validation", "eval": "validation"}
_SUFFIXES = (".parquet", ".jsonl", ".json")


class LoaderError(ValueError):
    """A task cannot be loaded at all (missing repo, config, split or media); the message names the fix."""


@dataclass(frozen=True)
class Snapshot:
    """One repo on disk: its directory, where it was found, and the commit it holds when known."""

    repo: str
    path: Path
    origin: Origin
    revision: str | None

    def record(self) -> dict[str, Any]:
        return {"repo": self.repo, "origin": self.origin, "revision": self.revision, "path": str(self.path)}


def download_hint(repo: str, data_root: Path | None) -> str:
    target = f" --local-dir {data_root / repo}" if data_root is not None else ""
    return f"huggingface-cli download {repo} --repo-type dataset{target}"


def locate(repo: str, data_root: str | Path | None, download: bool = False) -> Snapshot:
    """The snapshot of `repo`: under `data_root` when given, else in the hub cache (offline unless `download`)."""
    if data_root is not None:
        root = Path(data_root)
        path = root / repo
        if not path.is_dir() and download:
            _download(repo, local_dir=path)
        if not path.is_dir():
            raise LoaderError(f"{repo}: not found at {path}; download it with `{download_hint(repo, root)}` "
                              "(or pass --download)")
        return Snapshot(repo, path, "data-root", _local_dir_revision(path))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id=repo, repo_type="dataset", local_files_only=True))
    except LocalEntryNotFoundError:
        if not download:
            raise LoaderError(f"{repo}: not in the Hugging Face cache ({_hub_cache()}); download it with "
                              f"`{download_hint(repo, None)}`, pass --download, or point --data-root at a local "
                              "tree of snapshots") from None
        path = _download(repo, local_dir=None)
    return Snapshot(repo, path, "hf-cache", path.name)


def _download(repo: str, local_dir: Path | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo, repo_type="dataset",
                                      local_dir=None if local_dir is None else str(local_dir)))
    except Exception as e:  # offline, unknown repo, auth: the hub's own message is the useful part
        raise LoaderError(f"{repo}: download failed ({type(e).__name__}: {e})") from None


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _local_dir_revision(path: Path) -> str | None:
    """The commit `huggingface-cli download --local-dir` recorded (first line of its per-file metadata)."""
    meta = path / ".cache" / "huggingface" / "download"
    for f in sorted(meta.rglob("*.metadata"))[:1] if meta.is_dir() else []:
        first = f.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].strip()
        return first or None
    return None


# --- split files ----------------------------------------------------------------------------------------
def split_files(snap: Snapshot, config: str | None, split: str, task: str) -> list[Path]:
    """The data files of (config, split), resolved by `datasets` as `load_dataset(repo, config, split)` does.

    A config named in the README is resolved from it; a config that is only a sub-directory (a copy without
    the README) is resolved with the default patterns inside that directory.
    """
    import datasets

    base = snap.path
    with tempfile.TemporaryDirectory(prefix="ume-datasets-") as cache:  # builders write lock files only
        try:
            builder = datasets.load_dataset_builder(str(base), config, cache_dir=cache)
        except ValueError as e:
            if config is None or not (base / config).is_dir():
                raise LoaderError(f"task {task}: {snap.repo} has no config {config!r} ({e})") from None
            builder = datasets.load_dataset_builder(str(base / config), cache_dir=cache)
        except FileNotFoundError as e:
            raise LoaderError(f"task {task}: no data files in {base} ({e})") from None
    files = {str(k): v for k, v in (builder.config.data_files or {}).items()}
    for name in (split, SPLIT_ALIASES.get(split)):
        if name in files:
            return [Path(f) for f in files[name] if Path(f).suffix in _SUFFIXES]
    where = f"config {config!r} of " if config else ""
    raise LoaderError(f"task {task}: split {split!r} not found in {where}{snap.repo} at {base} "
                      f"(splits there: {sorted(files) or 'none'})")


def file_record(path: Path) -> dict[str, Any]:
    """Name, size and content id of a data file: the hub's blob id when it comes from the cache (free),
    else sha256 up to HASH_LIMIT."""
    size = path.stat().st_size
    rec: dict[str, Any] = {"file": path.name, "size": size}
    real = Path(os.path.realpath(path))
    if real != path.absolute() and real.parent.name == "blobs":
        rec["blob"] = real.name
    elif size <= HASH_LIMIT:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
        rec["sha256"] = digest.hexdigest()
    return rec


# --- rows ---------------------------------------------------------------------------------------------------
def iter_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of one data file, in order. A line of a JSONL file that is not valid JSON becomes a row
    `{"__error__": reason}`, so the loader reports it and keeps the rest."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    if path.suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # not one JSON document: JSON lines under a .json name, as `datasets` also accepts
        if isinstance(data, list):
            for i, row in enumerate(data):
                yield row if isinstance(row, dict) else {"__error__": f"{path.name}[{i}]: not a JSON object"}
            return
        if isinstance(data, dict):
            yield data
            return
    for line in iter_json_lines(path):
        error = line.error or (None if isinstance(line.value, dict) else "not a JSON object")
        yield line.value if error is None else {"__error__": f"{path.name}:{line.number}: {error}"}


def _relative(path: Path, base: Path) -> str:
    """`path` inside the repo, also when `datasets` returned it through resolved directory symlinks."""
    for p, b in ((path, base), (path.parent.resolve() / path.name, base.resolve())):
        if p.is_relative_to(b):
            return p.relative_to(b).as_posix()
    return str(path)


@dataclass
class Table:
    """The rows of one (repo, config, split) and how they were found."""

    rows: list[dict[str, Any]]
    record: dict[str, Any]


def read_split(snap: Snapshot, config: str | None, split: str, task: str, max_rows: int | None = None) -> Table:
    """All rows of (config, split) in file order (the first `max_rows` when given), with a provenance record."""
    files = split_files(snap, config, split, task)
    if not files:
        raise LoaderError(f"task {task}: split {split!r} of {snap.repo} lists no .parquet/.jsonl/.json file")
    rows: list[dict[str, Any]] = []
    for f in files:
        for row in iter_rows(f):
            if max_rows is not None and len(rows) >= max_rows:
                break
            rows.append(row)
    record = {**snap.record(), "config": config, "split": split, "rows": len(rows),
              "files": [file_record(f) | {"path": _relative(f, snap.path)} for f in files]}
    if max_rows is not None:
        record["max_rows"] = max_rows
    return Table(rows, record)


# --- a run's view of the data ---------------------------------------------------------------------------
@dataclass
class Sources:
    """Where one evaluation run finds its repos and media (each repo located once).

    `media_root` overrides where the unpacked TIGER-Lab/MMEB-V2 media are (a directory holding `image-tasks/`
    and `video-tasks/frames/`, e.g. the clone download_data.sh writes); default: the repo's own snapshot.
    """

    data_root: Path | None = None
    media_root: Path | None = None
    download: bool = False

    def __post_init__(self) -> None:
        self._snaps: dict[str, Snapshot] = {}
        if self.data_root is not None and not Path(self.data_root).is_dir():
            raise LoaderError(f"data root not found: {self.data_root}")

    def snapshot(self, repo: str) -> Snapshot:
        if repo not in self._snaps:
            self._snaps[repo] = locate(repo, self.data_root, self.download)
        return self._snaps[repo]

    def table(self, repo: str, config: str | None, split: str, task: str, max_rows: int | None = None) -> Table:
        return read_split(self.snapshot(repo), config, split, task, max_rows)

    def media_dir(self, repo: str, sub: str, task: str) -> Path:
        """`sub` (e.g. "image-tasks" or "video-tasks/frames/video_cls/SSv2") of the unpacked media repo."""
        base = self.media_root if self.media_root is not None and repo == MMEB_MEDIA else None
        base = Path(base) if base is not None else self.snapshot(repo).path
        path = base / sub
        if path.is_dir():
            return path
        packed = [a.parts[0] for a in ARCHIVES if sub.startswith(a.provides) and (base / a.parts[0]).exists()]
        if packed:
            raise LoaderError(f"task {task}: {path} does not exist but {base / packed[0]} does: the media archives "
                              f"are not unpacked; run `ume data unpack {base}` (what download_data.sh does)")
        raise LoaderError(f"task {task}: media directory not found: {path} (download {repo} and unpack its "
                          f"archives: `{download_hint(repo, self.data_root)}`, then `ume data unpack <that dir>`; "
                          "or pass --media-root)")

