"""The report's cache: t-SNE maps and conceptor refits keyed by the features file's content.

A report folder keeps ``cache/`` beside its figures. A new report of the same runs reads the
previous folder's cache and carries every entry it uses into the new folder, so a second
``entangle report`` recomputes nothing whose inputs did not change. A key is the SHA-256 of
the features file's bytes together with every setting and library version that changes the
result; a stale or unreadable entry is ignored (recomputed), never trusted blindly: entries
are plain arrays read by :func:`entangle.runs.untrusted.load_npz` (no pickles, sizes within
the limits of :mod:`entangle.runs.limits`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from entangle.errors import EntangleValueError
from entangle.runs.io import atomic_write, make_dir
from entangle.runs.untrusted import load_npz
from entangle.runs.values import utf8

CACHE_DIR = "cache"
# bumped when the meaning of a cached entry changes
CACHE_FORMAT = 1


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(kind: str, digest: str, settings: Mapping) -> str:
    """Entry name for ``kind`` computed from a file of ``digest`` with ``settings``."""
    blob = json.dumps(
        {"format": CACHE_FORMAT, "kind": kind, "file": digest, **settings}, sort_keys=True
    )
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:32]}"


class ReportCache:
    """Read entries from the previous report's cache, write them into the new report's.

    Args:
        previous: the existing report folder that is about to be replaced (or None).
        target: the new report's (temporary) folder.
        extra: more folders to read entries from (each holding ``cache/``), e.g. the maps
            the demo computed while it trained (:mod:`entangle.report.demo`).
    """

    def __init__(self, previous: Path | None, target: Path, extra=()):
        self.sources = [target / CACHE_DIR]
        if previous is not None:
            self.sources.append(Path(previous) / CACHE_DIR)
        self.sources += [Path(folder) / CACHE_DIR for folder in extra]
        self.folder = target / CACHE_DIR
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None (missing or unreadable)."""
        for folder in self.sources:
            path = folder / f"{key}.npz"
            if path.is_symlink() or not path.is_file():
                continue
            try:  # a previous folder's entry is untrusted: pickles and size bombs refused
                arrays = load_npz(path, what="report cache entry")
            except EntangleValueError:
                continue
            if folder != self.folder:
                self.put(key, arrays)
            self.hits += 1
            return arrays
        self.misses += 1
        return None

    def put(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Store ``arrays`` under ``key`` in the new report's cache."""
        make_dir(self.folder, parents=False)
        path = self.folder / f"{key}.npz"
        if not path.exists():
            data = {k: np.asarray(v) for k, v in arrays.items()}
            atomic_write(path, lambda fh: np.savez(fh, **data))


def runs_digest(paths, names, settings: Mapping) -> str:
    """One SHA-256 over every input file of the runs (run.json, records, saved features),
    their display names and the report settings: equal digests draw equal figures."""
    digest = hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode())
    for path, name in zip(paths, names, strict=True):
        digest.update(utf8(f"\0run\0{name}\0"))
        folder = Path(path)
        files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()]
        features = folder / "features"
        if features.is_dir() and not features.is_symlink():
            files += [p for p in sorted(features.iterdir()) if p.is_file() and not p.is_symlink()]
        for file in files:
            digest.update(f"\0{file.relative_to(folder)}\0{file_digest(file)}".encode())
    return digest.hexdigest()


def cached_figure(cache: ReportCache | None, digest: str | None, name: str, pdf: bool, draw):
    """A figure's files from the cache, else ``draw()`` them and store them.

    Args:
        cache: the report's cache (None: always draw).
        digest: :func:`runs_digest` of the report's inputs.
        name: the figure's file stem.
        pdf: whether the figure also has a PDF.
        draw: ``() -> (png bytes, pdf bytes or None) | None`` (None: no figure to show).

    Returns:
        ``(png, pdf)`` bytes or None, as ``draw`` returned them.
    """
    key = (
        None
        if cache is None or digest is None
        else cache_key("figure", digest, {"name": name, "pdf": pdf, "versions": _plot_versions()})
    )
    if key is not None:
        entry = cache.get(key)
        if entry is not None and "drawn" in entry:
            if not bool(entry["drawn"]):
                return None
            png = entry["png"].tobytes()
            return png, entry["pdf"].tobytes() if pdf and "pdf" in entry else None
    result = draw()
    if key is not None:
        arrays = {"drawn": np.bool_(result is not None)}
        if result is not None:
            arrays["png"] = np.frombuffer(result[0], dtype=np.uint8)
            if result[1] is not None:
                arrays["pdf"] = np.frombuffer(result[1], dtype=np.uint8)
        cache.put(key, arrays)
    return result


@functools.lru_cache(maxsize=1)
def _drawing_code() -> str:
    """SHA-256 of the code that draws figures (entangle/report and entangle/runs sources).

    The version string alone left a figure drawn by older code in the cache after the code
    changed (a git checkout keeps ``0.1.0``); read once per process.
    """
    import entangle

    root = Path(entangle.__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*(root / "report").glob("*.py"), *(root / "runs").glob("*.py")]):
        digest.update(f"\0{path.name}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def _plot_versions() -> dict[str, str]:
    from importlib import metadata

    from entangle import __version__

    out = {"entangle": __version__, "drawing_code": _drawing_code()}
    for name in ("matplotlib", "seaborn", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out
