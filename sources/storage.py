"""Files to read, wherever they are: a local path, directory or glob, or ``gs://bucket/prefix``.

Every object is named by a URI (``file:///abs/path`` or ``gs://bucket/name``)
and carries a fingerprint that changes whenever its content can have changed
(local: size and modification time; Cloud Storage: size, generation and
etag), so a caller can tell that a source is the same as last time without
reading it. Cloud Storage goes through the official ``google-cloud-storage``
client; with ``STORAGE_EMULATOR_HOST`` set it talks to that emulator
anonymously.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from riffle.config.errors import RiffleError

GLOB_CHARS = frozenset("*?[")


class StorageError(RiffleError):
    """A source that cannot be listed or read."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One file of a source."""

    uri: str
    size: int
    fingerprint: str


def gcs_client() -> Any:
    """A Cloud Storage client: the emulator's when ``STORAGE_EMULATOR_HOST`` is set."""
    from google.cloud import storage  # type: ignore[attr-defined]

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "riffle-local"))
    return storage.Client()


def split_gs(uri: str) -> tuple[str, str]:
    """``gs://bucket/some/prefix`` as ``("bucket", "some/prefix")``."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not bucket:
        raise StorageError(f"{uri}: a Cloud Storage source is gs://bucket/prefix")
    return bucket, name


def canonical(source: str) -> str:
    """The source as one string however it was written: ``gs://…`` as is, local
    paths absolute (a glob's pattern kept)."""
    if source.startswith("gs://"):
        return source.rstrip("/")
    return str(Path(source).expanduser().absolute())


def list_objects(source: str) -> list[StoredObject]:
    """Every file of ``source`` in name order; :class:`StorageError` when none is there."""
    found = _list_gs(source) if source.startswith("gs://") else _list_local(source)
    if not found:
        raise StorageError(f"{source}: no files found")
    return found


def _list_local(source: str) -> list[StoredObject]:
    path = Path(source).expanduser()
    if GLOB_CHARS & set(source):
        names = [Path(p) for p in glob.glob(str(path), recursive=True)]
    elif path.is_dir():
        names = [p for p in path.rglob("*") if not any(part.startswith(".") for part in p.parts)]
    else:
        names = [path] if path.exists() else []
    out = []
    for name in sorted(p.absolute() for p in names):
        if not name.is_file():
            continue
        stat = name.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        out.append(StoredObject(f"file://{name}", stat.st_size, stamp))
    return out


def _list_gs(source: str) -> list[StoredObject]:
    bucket, name = split_gs(source)
    pattern = None
    if GLOB_CHARS & set(name):
        cut = min(name.index(c) for c in GLOB_CHARS if c in name)
        pattern, name = name, name[:cut]
    try:
        blobs = list(gcs_client().list_blobs(bucket, prefix=name))
    except Exception as exc:  # any client failure: the source cannot be listed
        raise StorageError(f"{source}: cannot list: {exc}") from exc
    out = []
    for blob in blobs:
        if blob.name.endswith("/"):
            continue
        if pattern is not None:
            if not fnmatch.fnmatchcase(blob.name, pattern):
                continue
        elif name and blob.name != name and not blob.name.startswith(name.rstrip("/") + "/"):
            continue  # gs://b/data names data and data/…, not data-old
        stamp = f"{blob.size}:{blob.generation}:{blob.etag}"
        out.append(StoredObject(f"gs://{bucket}/{blob.name}", int(blob.size or 0), stamp))
    return sorted(out, key=lambda o: o.uri)


def open_object(uri: str) -> IO[bytes]:
    """A binary, seekable reader of one object."""
    try:
        if uri.startswith("gs://"):
            bucket, name = split_gs(uri)
            reader: IO[bytes] = gcs_client().bucket(bucket).blob(name).open("rb")
            return reader
        return Path(uri.removeprefix("file://")).open("rb")
    except Exception as exc:  # a missing object, a refused read: the same to callers
        raise StorageError(f"{uri}: cannot open: {exc}") from exc


def display(uri: str) -> str:
    """A URI as a person writes it: local files as paths."""
    return uri.removeprefix("file://")
