"""the wire between a record's process and the supervisor: one unix stream socket per rank.

a message is a frame: a 12-byte header (the json body's length, u32; the binary payload's
length, u64), the json object (utf-8), then the payload (a batch, the progress tokens). the
record's side asks and the supervisor answers; only `hello`, `batch` and `progress_slice` get an
answer, every other message is one-way, so a batch asked for ahead can still be in flight while
the record reports a step.

the supervisor imports this module too (the one format both sides speak); this module imports
nothing from either side."""
from __future__ import annotations

import json
import socket
import struct

HEADER = struct.Struct("<IQ")
MAX_JSON_BYTES = 1 << 24     # a json body larger than this is a broken peer, not a message
MAX_PAYLOAD_BYTES = 1 << 34  # 16 GiB: a payload larger than any batch or token slice


class WireError(RuntimeError):
    """the peer closed the socket, or sent something that is not a frame."""


def send(sock: socket.socket, msg: dict, payload=b"") -> None:
    """one frame: msg as json, then payload (bytes, bytearray or a contiguous buffer)."""
    body = json.dumps(msg, separators=(",", ":")).encode()
    view = memoryview(payload).cast("B") if payload is not None else b""
    sock.sendall(HEADER.pack(len(body), len(view)) + body)
    if len(view):
        sock.sendall(view)


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise WireError("the peer closed the connection")
        got += n


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    _recv_into(sock, memoryview(buf))
    return bytes(buf)


def recv(sock: socket.socket, out=None) -> tuple[dict, bytes | None]:
    """(msg, payload). a payload whose size matches `out` (a writable contiguous buffer, e.g. a
    pinned array) is read straight into it and None is returned in its place."""
    json_len, payload_len = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if json_len > MAX_JSON_BYTES or payload_len > MAX_PAYLOAD_BYTES:
        raise WireError(f"a frame of {json_len} + {payload_len} bytes: not a message of this protocol")
    try:
        msg = json.loads(_recv_exact(sock, json_len))
    except ValueError as e:
        raise WireError(f"a frame whose body is not json ({e})") from None
    if not isinstance(msg, dict):
        raise WireError("a frame whose body is not a json object")
    if not payload_len:
        return msg, b""
    if out is not None:
        view = memoryview(out).cast("B")
        if len(view) == payload_len:
            _recv_into(sock, view)
            return msg, None
    return msg, _recv_exact(sock, payload_len)


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock
