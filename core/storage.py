"""Content-addressed storage of uploaded originals: ``<blob_dir>/<sha[:2]>/<sha>.pdf``.

The same bytes always land at the same path, so storing twice is harmless and a document row
only needs its sha256. A blob appears atomically (written to a temporary file in the same
directory, then linked into place) so a reader never sees half a file, and ``created`` says
whether this call made it: only then may the caller delete it again when its own write fails.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from core.errors import NotFoundError
from core.settings import get_settings

_SHA256 = re.compile(r"[0-9a-f]{64}")


def blob_path(sha256: str) -> Path:
    """Where the blob with this sha256 lives (whether or not it exists)."""
    if not _SHA256.fullmatch(sha256):
        # The sha becomes a path: refuse anything that is not exactly 64 lower-case hex digits.
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return get_settings().blob_dir / sha256[:2] / f"{sha256}.pdf"


def store_blob(data: bytes) -> tuple[str, Path, bool]:
    """Store ``data``; returns (sha256, path, created). Idempotent: existing blobs are left alone."""
    sha256 = hashlib.sha256(data).hexdigest()
    path = blob_path(sha256)
    if path.exists():
        return sha256, path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{sha256[:12]}-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link() fails if the blob appeared meanwhile, so exactly one concurrent writer reports
            # created=True; replace() would let two writers both believe they created it.
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
        except OSError:
            # Filesystems without hard links: fall back to an atomic rename.
            created = not path.exists()
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256, path, created


def read_blob(sha256: str) -> bytes:
    path = blob_path(sha256)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"The original file {sha256[:12]}... is missing from the file store ({path.parent}). Upload the PDF again."
        ) from exc


def delete_blob(sha256: str) -> bool:
    """Remove a blob; returns whether there was one to remove."""
    path = blob_path(sha256)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
