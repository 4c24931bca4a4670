"""Where the archive's objects live: a local directory or ``gs://bucket/prefix``.

Names are relative to the root and use ``/``. A local write goes to a
temporary file renamed into place, so a reader never sees half an object;
a Cloud Storage upload is atomic by itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from riffle.sinks.errors import SinkError


class ArchiveStore:
    """Objects under one root; see the module docstring."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self._bucket: Any = None
        if self.root.startswith("gs://"):
            from google.cloud import storage  # type: ignore[attr-defined]

            bucket, _, self._prefix = self.root.removeprefix("gs://").partition("/")
            emulated = os.environ.get("STORAGE_EMULATOR_HOST")
            project = os.environ.get("GOOGLE_CLOUD_PROJECT", "riffle-local") if emulated else None
            self._bucket = storage.Client(project=project).bucket(bucket)
        else:
            self._dir = Path(self.root).expanduser()

    def uri(self, name: str) -> str:
        """The full URI of an object (what readers open)."""
        if self._bucket is not None:
            return f"{self.root}/{name}"
        return f"file://{self._dir.absolute() / name}"

    def write(self, name: str, data: bytes) -> None:
        """Create or replace one object; :class:`SinkError` if it cannot be written."""
        try:
            if self._bucket is not None:
                self._bucket.blob(self._key(name)).upload_from_string(data)
                return
            path = self._dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except Exception as exc:  # any storage failure: the sink retries the batch
            raise SinkError(f"archive write of {name} failed: {exc}") from exc

    def read(self, name: str) -> bytes | None:
        """One object's bytes, ``None`` when there is none."""
        try:
            if self._bucket is not None:
                blob = self._bucket.get_blob(self._key(name))
                return None if blob is None else bytes(blob.download_as_bytes())
            path = self._dir / name
            return path.read_bytes() if path.exists() else None
        except Exception as exc:  # any storage failure: the sink retries the batch
            raise SinkError(f"archive read of {name} failed: {exc}") from exc

    def names(self, prefix: str) -> list[str]:
        """Names of the objects under ``prefix`` (relative to the root), in name order."""
        try:
            if self._bucket is not None:
                blobs = self._bucket.client.list_blobs(self._bucket, prefix=self._key(prefix))
                cut = len(self._key(""))
                return sorted(blob.name[cut:] for blob in blobs)
            base = self._dir / prefix
            if not base.is_dir():
                return []
            names = (p.relative_to(self._dir).as_posix() for p in base.rglob("*") if p.is_file())
            return sorted(n for n in names if not Path(n).name.startswith(".tmp-"))
        except Exception as exc:  # any storage failure: the caller retries or reports it
            raise SinkError(f"archive listing of {prefix} failed: {exc}") from exc

    def children(self, prefix: str) -> list[str]:
        """Names of the folders directly under ``prefix`` (``""``: the root), in name order."""
        try:
            if self._bucket is not None:
                key = self._key(prefix).rstrip("/")
                blobs = self._bucket.client.list_blobs(
                    self._bucket, prefix=f"{key}/" if key else "", delimiter="/"
                )
                list(blobs)  # the prefixes are known once the pages are read
                return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in blobs.prefixes)
            base = self._dir / prefix
            return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        except Exception as exc:  # any storage failure: the caller retries or reports it
            raise SinkError(f"archive listing of {prefix or 'the root'} failed: {exc}") from exc

    def _key(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name
