"""Encrypted snapshot files: a vector graph saved beside the database, as safe as it.

Layout: a header (magic, format version, log position, model id) authenticated as
associated data, then chunks of at most CHUNK bytes, each sealed with ChaCha20-Poly1305
under its own random nonce, with the chunk number and a last-chunk flag bound into its
associated data, so a reordered, truncated or altered file is refused. The key is derived
from the database key with HKDF, so a snapshot opens only with the node's own key.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"CISSNAP1"
CHUNK = 1024 * 1024  # small, so sealing or opening one never holds other threads long
TAG = 16  # Poly1305 tag bytes at the end of each sealed chunk
_HEAD = struct.Struct("<8sQH")  # magic, log position, model id length
_CHUNK_HEAD = struct.Struct("<12sIB")  # nonce, sealed length, last flag


def _cipher(db_key: bytes, purpose: bytes) -> ChaCha20Poly1305:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(db_key)
    return ChaCha20Poly1305(key)


class SnapshotFile:
    """One encrypted snapshot file; `load` answers None for anything it cannot trust."""

    def __init__(self, path: Path, db_key: bytes, model: str):
        self.path = path
        self.model = model.encode("utf-8")
        self._aead = _cipher(db_key, b"cis snapshot v1 " + path.name.encode("utf-8"))

    def save(self, position: int, payload: bytes | bytearray | memoryview) -> None:
        """Write atomically (temp file, fsync, rename)."""
        head = _HEAD.pack(MAGIC, position, len(self.model)) + self.model
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            view = memoryview(payload)  # slices below copy nothing
            chunks = range(0, max(len(payload), 1), CHUNK)
            for number, start in enumerate(chunks):
                last = start + CHUNK >= len(payload)
                nonce = os.urandom(12)
                aad = head + struct.pack("<IB", number, last)
                sealed = self._aead.encrypt(nonce, view[start : start + CHUNK], aad)
                out.write(_CHUNK_HEAD.pack(nonce, len(sealed), last) + sealed)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)

    def load(self) -> tuple[int, memoryview] | None:
        """(log position, payload), or None if missing, corrupt, foreign or of another model.
        Read a chunk at a time into one small buffer and opened into the payload, so the
        file's bytes are never held whole beside it."""
        try:
            with self.path.open("rb", buffering=0) as src:
                return self._open(src, os.fstat(src.fileno()).st_size)
        except (OSError, struct.error, InvalidTag, ValueError):
            return None

    def _open(self, src: io.RawIOBase, size: int) -> tuple[int, memoryview] | None:
        fixed = _exactly(src, _HEAD.size)
        magic, position, model_size = _HEAD.unpack(fixed)
        if magic != MAGIC or _exactly(src, model_size) != self.model:
            return None
        head = fixed + self.model
        payload = _buffer(size)  # at most this; pages never written cost nothing
        sealed = _buffer(CHUNK + TAG)
        at, number, last = 0, 0, False
        while not last:
            nonce, length, last = _CHUNK_HEAD.unpack(_exactly(src, _CHUNK_HEAD.size))
            if not TAG <= length <= CHUNK + TAG:
                return None
            _fill(src, sealed[:length])
            aad = head + struct.pack("<IB", number, last)
            self._aead.decrypt_into(nonce, sealed[:length], aad, payload[at : at + length - TAG])
            at, number = at + length - TAG, number + 1
        if src.read(1):
            return None  # bytes after the last chunk
        return position, payload[:at]


def _exactly(src: io.RawIOBase, size: int) -> bytes:
    """The next `size` bytes; ValueError if the file ends first."""
    data = bytearray(size)
    _fill(src, memoryview(data))
    return bytes(data)


def _fill(src: io.RawIOBase, view: memoryview) -> None:
    """Fill `view` from the file (a read may return less than asked); ValueError if the
    file ends first."""
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])
        if not n:
            raise ValueError("snapshot file ends early")
        got += n


def _buffer(size: int) -> memoryview:
    """A writable buffer of `size` bytes, not filled: its pages come as they are written
    (bytearray(size) would first zero them all, holding other threads)."""
    return np.empty(size, dtype=np.uint8).data
