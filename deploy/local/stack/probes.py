"""Readiness probes that speak each server's own protocol (Kafka, MongoDB wire, HTTP), and the wait
for a freshly started process to pass one."""

import http.client
import socket
import struct
import time
from collections.abc import Callable

from .common import StackError, tail
from .config import HOST
from .paths import StatePaths
from .processes import alive


class ProbeError(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by peer")
        buf += chunk
    return bytes(buf)


# Kafka wire protocol: ApiVersions, Metadata and FindCoordinator, in non-flexible versions only


def _kafka_call(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client = b"stackctl"
    # request header v1 (non-flexible versions only): key, version, correlation id, client id
    msg = struct.pack(">hhih", api_key, version, corr, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    data = _recv_exact(sock, size)
    (rcorr,) = struct.unpack_from(">i", data, 0)
    if rcorr != corr:
        raise ProbeError(f"correlation id mismatch ({rcorr} != {corr})")
    return data[4:]  # response header v0 is only the correlation id


def _kstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.off = data, 0

    def take(self, fmt: str):
        vals = struct.unpack_from(fmt, self.data, self.off)
        self.off += struct.calcsize(fmt)
        return vals[0] if len(vals) == 1 else vals

    def nstring(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.off : self.off + n].decode("utf-8", "replace")
        self.off += n
        return s


def _pick(versions: dict[int, tuple[int, int]], key: int, lo: int, hi: int) -> int | None:
    if key not in versions:
        return None
    smin, smax = versions[key]
    v = max(smin, lo)
    return v if v <= min(smax, hi) else None


def kafka_probe(host: str, port: int, *, timeout: float = 2.0, coordinator: bool = True) -> dict:
    """Ask a broker whether it is ready to serve clients.

    ApiVersions v0 must answer without error, Metadata must list at least one
    broker, and (``coordinator=True``) FindCoordinator for a group must succeed,
    which also creates ``__consumer_offsets`` so consumer groups start fast.
    Raises ProbeError/OSError when not ready.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        r = _Reader(_kafka_call(sock, 18, 0, 1, b""))
        err = r.take(">h")
        if err != 0:
            raise ProbeError(f"ApiVersions error code {err}")
        versions = {}
        for _ in range(r.take(">i")):
            k, lo, hi = r.take(">hhh")
            versions[k] = (lo, hi)

        mv = _pick(versions, 3, 1, 8)  # non-flexible Metadata versions we can encode
        if mv is None:
            raise ProbeError(f"no usable Metadata version (broker offers {versions.get(3)})")
        body = struct.pack(">i", 0)  # empty topic list: brokers only
        if mv >= 4:
            body += b"\x00"  # allow_auto_topic_creation
        if mv >= 8:
            body += b"\x00\x00"  # include cluster/topic authorized operations
        r = _Reader(_kafka_call(sock, 3, mv, 2, body))
        if mv >= 3:
            r.take(">i")  # throttle
        brokers = []
        for _ in range(r.take(">i")):
            node = r.take(">i")
            bhost = r.nstring()
            bport = r.take(">i")
            r.nstring()  # rack
            brokers.append((node, bhost, bport))
        if not brokers:
            raise ProbeError("Metadata lists no broker yet")
        info = {"brokers": brokers, "api_versions": versions}

        if coordinator:
            fv = _pick(versions, 10, 1, 2)
            if fv is not None:
                r = _Reader(_kafka_call(sock, 10, fv, 3, _kstr("stackctl-readiness") + b"\x00"))
                r.take(">i")  # throttle
                err = r.take(">h")
                if err != 0:
                    raise ProbeError(f"group coordinator not available yet (error code {err})")
        return info


# MongoDB wire protocol: one OP_MSG, with just enough BSON for ``hello`` and its reply


def _bson_encode(doc: dict) -> bytes:
    out = bytearray()
    for k, v in doc.items():
        key = k.encode() + b"\0"
        if isinstance(v, bool):
            out += b"\x08" + key + (b"\x01" if v else b"\x00")
        elif isinstance(v, int):
            out += b"\x10" + key + struct.pack("<i", v)
        elif isinstance(v, str):
            b = v.encode() + b"\0"
            out += b"\x02" + key + struct.pack("<i", len(b)) + b
        else:
            raise TypeError(f"unsupported BSON value {v!r}")
    return struct.pack("<i", len(out) + 5) + bytes(out) + b"\0"


def _bson_decode(data: bytes) -> dict:
    """Top-level scalars of a BSON document (nested documents are skipped)."""
    (total,) = struct.unpack_from("<i", data, 0)
    off, end, out = 4, total - 1, {}
    while off < end:
        t = data[off]
        off += 1
        nul = data.index(b"\0", off)
        key = data[off:nul].decode("utf-8", "replace")
        off = nul + 1
        if t == 0x01:
            out[key] = struct.unpack_from("<d", data, off)[0]
            off += 8
        elif t in (0x02, 0x0D, 0x0E):
            (n,) = struct.unpack_from("<i", data, off)
            out[key] = data[off + 4 : off + 3 + n].decode("utf-8", "replace")
            off += 4 + n
        elif t in (0x03, 0x04):
            (n,) = struct.unpack_from("<i", data, off)
            off += n
        elif t == 0x05:
            (n,) = struct.unpack_from("<i", data, off)
            off += 5 + n
        elif t == 0x07:
            off += 12
        elif t == 0x08:
            out[key] = data[off] != 0
            off += 1
        elif t in (0x09, 0x11, 0x12):
            out[key] = struct.unpack_from("<q", data, off)[0]
            off += 8
        elif t in (0x06, 0x0A, 0x7F, 0xFF):
            out[key] = None
        elif t == 0x10:
            out[key] = struct.unpack_from("<i", data, off)[0]
            off += 4
        elif t == 0x13:
            off += 16
        elif t == 0x0B:  # regex: two cstrings
            off = data.index(b"\0", data.index(b"\0", off) + 1) + 1
        else:
            raise ProbeError(f"unexpected BSON type 0x{t:02x}")
    return out


def mongo_probe(host: str, port: int, *, timeout: float = 2.0) -> dict:
    """Send OP_MSG ``{hello: 1, $db: "admin"}`` and return the reply's top-level scalars.

    Raises ProbeError/OSError unless the server answers ``ok: 1``.
    """
    doc = _bson_encode({"hello": 1, "$db": "admin"})
    payload = struct.pack("<I", 0) + b"\x00" + doc  # flagBits, section kind 0 (body)
    request_id = int(time.monotonic() * 1000) & 0x7FFFFFFF
    msg = struct.pack("<iiii", 16 + len(payload), request_id, 0, 2013) + payload
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(msg)
        length, _, response_to, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
        body = _recv_exact(sock, length - 16)
    if opcode != 2013 or response_to != request_id:
        raise ProbeError(f"unexpected reply (opcode {opcode}, responseTo {response_to})")
    if body[4] != 0:
        raise ProbeError(f"unexpected OP_MSG section kind {body[4]}")
    reply = _bson_decode(body[5:])
    if reply.get("ok") != 1:
        raise ProbeError(f"hello answered {reply}")
    return reply


def http_probe(port: int, path: str = "/healthz", *, timeout: float = 2.0) -> int:
    """Status code of GET http://127.0.0.1:port/path (no proxies involved)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_ready(
    paths: StatePaths,
    name: str,
    pid: int,
    probe: Callable[[], object],
    timeout: float,
    tail_lines: int,
    *,
    deadline: float | None = None,
) -> None:
    """Poll ``probe`` until it passes; fail early if the process dies. ``deadline`` overrides ``timeout``."""
    if deadline is None:
        deadline = time.monotonic() + timeout
    last: object = "no answer"
    while True:
        if not alive(pid):
            raise StackError(
                f"{name} exited during startup (pid {pid}); log {paths.log(name)}, last {tail_lines} lines:\n"
                + tail(paths.log(name), tail_lines)
            )
        try:
            probe()
            return
        except (OSError, ProbeError, struct.error, ValueError, http.client.HTTPException) as e:
            last = e
        if time.monotonic() >= deadline:
            raise StackError(
                f"{name} did not become ready within {timeout:.0f} s ({last}); log {paths.log(name)}, "
                f"last {tail_lines} lines:\n" + tail(paths.log(name), tail_lines)
            )
        time.sleep(0.2)
