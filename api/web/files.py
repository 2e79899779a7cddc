"""Evidence files uploaded from the console: photos and documents of a rectification.

The API records an attachment's metadata only (filename, type, size, SHA-256, where it is kept); the
console keeps the body too, content-addressed under `data_dir/evidence/ab/abcdef…` (the SHA-256 of its
bytes), and records it through the same ledger operation as the API (`hazards.ledger.add_evidence`,
kind `attachment`, `uri = "console-file:<sha256>"`). A file is served back only through its ticket, so
whoever may not see the ticket cannot fetch the file (`api.web.ledger`).

The type is decided by the bytes (magic numbers), never by the name or the browser's claim; the claim
must agree with them. Nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path

#: Largest file the console accepts (a phone photo is 2–6 MB).
MAX_BYTES = 10 * 1024 * 1024
URI_PREFIX = "console-file:"
#: Accepted types: content type -> (magic prefix, extension).
TYPES: dict[str, tuple[bytes, str]] = {
    "image/jpeg": (b"\xff\xd8\xff", ".jpg"),
    "image/png": (b"\x89PNG\r\n\x1a\n", ".png"),
    "application/pdf": (b"%PDF-", ".pdf"),
}
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_BAD = re.compile(r"[\x00-\x1f\x7f/\\]")


class FileRefused(ValueError):
    """The upload is refused: too large, empty, of a type not accepted, or claiming another type."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Stored:
    sha256: str
    size_bytes: int
    content_type: str
    filename: str

    def attachment(self) -> dict[str, object]:
        """The attachment metadata the ledger records (the API's attachment fields)."""
        return {"filename": self.filename, "content_type": self.content_type, "size_bytes": self.size_bytes,
                "sha256": self.sha256, "uri": URI_PREFIX + self.sha256}


def sniff(head: bytes) -> str | None:
    """The accepted content type these first bytes are, or None."""
    for ctype, (magic, _ext) in TYPES.items():
        if head.startswith(magic):
            return ctype
    return None


def clean_filename(name: str | None, ctype: str) -> str:
    """A display name: no path, no control characters, at most 120 characters, with the type's extension."""
    base = _NAME_BAD.sub("_", (name or "").replace("\\", "/").rsplit("/", 1)[-1]).strip().lstrip(".")[:120]
    ext = TYPES[ctype][1]
    if not base:
        base = "file" + ext
    if not base.lower().endswith(ext) and not (ext == ".jpg" and base.lower().endswith(".jpeg")):
        base += ext
    return base


def check(body: bytes, claimed_type: str | None, filename: str | None) -> Stored:
    """Decide whether these bytes may be kept; pure."""
    if not body:
        raise FileRefused(422, "文件为空。 The file is empty.")
    if len(body) > MAX_BYTES:
        raise FileRefused(413, f"文件超过 {MAX_BYTES // (1024 * 1024)} MB。 The file is larger than "
                               f"{MAX_BYTES // (1024 * 1024)} MB.")
    ctype = sniff(body[:16])
    if ctype is None:
        raise FileRefused(415, "只接受 JPEG、PNG 照片或 PDF 文件。 Only JPEG or PNG photos and PDF files are accepted.")
    claimed = (claimed_type or "").split(";", 1)[0].strip().lower()
    if claimed and claimed not in ("application/octet-stream", ctype):
        raise FileRefused(415, "文件内容与声明的类型不符。 The file's content does not match its declared type.")
    return Stored(hashlib.sha256(body).hexdigest(), len(body), ctype, clean_filename(filename, ctype))


def parse_multipart(content_type: str, body: bytes, max_fields: int = 10) -> tuple[dict[str, str],
                                                                                  tuple[str | None, str, bytes] | None]:
    """A multipart/form-data body (already size-limited) -> (text fields, the `file` part's name, type, bytes).

    The standard library's MIME parser does the work, so no upload library is needed; a body with more
    than `max_fields` parts, or more than one file, is refused (ValueError)."""
    if "boundary=" not in content_type:
        raise ValueError("no boundary")
    msg = BytesParser(policy=email_policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    if not msg.is_multipart():
        raise ValueError("not multipart")
    parts = list(msg.iter_parts())
    if len(parts) > max_fields:
        raise ValueError("too many parts")
    fields: dict[str, str] = {}
    upload: tuple[str | None, str, bytes] | None = None
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        if name == "file" and filename is not None:
            if upload is not None:
                raise ValueError("more than one file")
            # browsers send the name as raw UTF-8, which the MIME parser keeps as surrogate escapes
            filename = filename.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            upload = (filename, part.get_content_type(), data)
        elif filename is None and name not in fields:
            if len(data) > 64 * 1024:
                raise ValueError("field too large")
            fields[name] = data.decode("utf-8", "replace")
    return fields, upload


def path_of(root: Path, sha256: str) -> Path:
    if not _SHA_RE.fullmatch(sha256):
        raise ValueError("not a SHA-256")
    return root / sha256[:2] / sha256


def save(root: Path, body: bytes, stored: Stored) -> Path:
    """Write the body once (content-addressed, atomic rename); an identical file is already there."""
    dest = path_of(root, stored.sha256)
    if dest.is_file() and dest.stat().st_size == stored.size_bytes:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".up-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def read(root: Path, sha256: str) -> bytes | None:
    """The body, if it is there and still has its SHA-256 (a damaged file is not served)."""
    p = path_of(root, sha256)
    if not p.is_file():
        return None
    body = p.read_bytes()
    return body if hashlib.sha256(body).hexdigest() == sha256 else None
