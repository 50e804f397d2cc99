"""A PostgreSQL wire-protocol proxy on 127.0.0.1 that refuses transaction-local settings.

PostgreSQL lets every role SET its own user-level parameters, so "a role whose SET is
refused" cannot be made inside the server. A connection pooler is what refuses or loses such
state; this proxy plays one: every statement beginning with `SET LOCAL` is replaced, on its
way to the server, by one that raises the error a pooler would give. Everything else passes
byte for byte, so the rest of the session is real PostgreSQL.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from types import TracebackType

REFUSED = re.compile(rb"^\s*SET\s+LOCAL\b", re.IGNORECASE)
ERROR_SQL = b"DO $$BEGIN RAISE EXCEPTION 'SET LOCAL is not supported by this pooler'; END$$"
UNTYPED_REQUESTS = {80877103, 80877104}  # SSLRequest, GSSENCRequest: another untyped follows


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def _rewrite(kind: bytes, body: bytes) -> bytes:
    """The message body with a refused statement replaced (simple and extended protocol)."""
    if kind == b"Q" and REFUSED.match(body):
        return ERROR_SQL + b"\x00"
    if kind == b"P":
        name, rest = body.split(b"\x00", 1)
        query, params = rest.split(b"\x00", 1)
        if REFUSED.match(query):
            return name + b"\x00" + ERROR_SQL + b"\x00" + params
    return body


class SetRefusingProxy:
    """`with SetRefusingProxy(port) as proxy:` then connect to 127.0.0.1:proxy.port."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.refused = 0

    def __enter__(self) -> SetRefusingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._to_client, args=(server, client), daemon=True).start()

    def _to_client(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()

    def _to_server(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while True:  # untyped start: SSL/GSS requests, then the startup message
                (length,) = struct.unpack("!i", _read(client, 4))
                body = _read(client, length - 4)
                server.sendall(struct.pack("!i", length) + body)
                if struct.unpack("!i", body[:4])[0] not in UNTYPED_REQUESTS:
                    break
            while True:
                kind = _read(client, 1)
                (length,) = struct.unpack("!i", _read(client, 4))
                body = _read(client, length - 4)
                new = _rewrite(kind, body)
                if new is not body:
                    self.refused += 1
                server.sendall(kind + struct.pack("!i", len(new) + 4) + new)
        except (OSError, ConnectionError):
            pass
        finally:
            server.close()
