"""Messages between the pool and its workers: a 4-byte big-endian length, then UTF-8 JSON.

JSON, not pickle: a message carries only names, numbers and shared-memory names, never code.
"""
from __future__ import annotations

import json
import os
from typing import Any

MAX_MESSAGE = 1 << 24


def encode(msg: dict[str, Any]) -> bytes:
    body = json.dumps(msg, separators=(",", ":")).encode()
    return len(body).to_bytes(4, "big") + body


def send(fd: int, msg: dict[str, Any]) -> None:
    data = memoryview(encode(msg))
    while data:
        data = data[os.write(fd, data):]


def recv(fd: int) -> dict[str, Any] | None:
    """The next message, or None at end of stream (the other side closed or died)."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    n = int.from_bytes(head, "big")
    body = _read_exactly(fd, n)
    if body is None:
        return None
    msg: dict[str, Any] = json.loads(body)
    return msg


def _read_exactly(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Decoder:
    """Frames from a non-blocking stream of bytes, as they arrive."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            n = int.from_bytes(self.buf[:4], "big")
            # A length this large is a corrupted stream, not a message.
            if n > MAX_MESSAGE:
                raise ValueError(f"message of {n} bytes from a worker")
            if len(self.buf) < 4 + n:
                break
            out.append(json.loads(bytes(self.buf[4 : 4 + n])))
            del self.buf[: 4 + n]
        return out
