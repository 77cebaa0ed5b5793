"""A TCP proxy on 127.0.0.1 in front of PostgreSQL that can lose the answer to a ``COMMIT``.

:class:`CommitAnswerDroppingProxy` forwards every byte both ways. Once :meth:`arm`-ed, it
reads the server's messages and, at the first ``CommandComplete`` of a ``COMMIT`` (the
server has committed: it answers only then), forwards nothing more and closes both sides
of that connection: the client sees its connection lost after sending ``COMMIT``, not
knowing whether the transaction was stored, which is the one ambiguous failure of a
database client. Clients must connect with ``sslmode=disable gssencmode=disable`` (the
proxy reads the plain protocol).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

_HEADER = struct.Struct("!cI")  # message type, then length (counting itself, not the type)


class CommitAnswerDroppingProxy:
    """Forwards connections to ``127.0.0.1:server_port``; may drop one ``COMMIT`` answer."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed = False
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        #: Set once a COMMIT's answer was swallowed (the server had committed).
        self.dropped = threading.Event()
        self._accepter = threading.Thread(target=self._accept, name="pg-proxy-accept")
        self._accepter.start()

    def conninfo(self, dbname: str, user: str) -> str:
        """A libpq string reaching the server through the proxy."""
        return (
            f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} "
            "sslmode=disable gssencmode=disable"
        )

    def arm(self) -> None:
        """Swallow the next answer to a ``COMMIT`` and cut that connection."""
        with self._lock:
            self._armed = True

    def close(self) -> None:
        """Stop accepting, cut every connection and join the proxy's threads."""
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        # Wake the accept() with a connection of our own (closing alone may not).
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
            pass
        self._accepter.join()
        self._listener.close()
        for sock in sockets:
            _cut(sock)
        for thread in list(self._threads):
            thread.join()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            with self._lock:
                if self._closed:
                    client.close()
                    return
            server = socket.create_connection(("127.0.0.1", self.server_port))
            with self._lock:
                self._sockets += [client, server]
            for target, args in (
                (self._pump_to_server, (client, server)),
                (self._pump_to_client, (server, client)),
            ):
                thread = threading.Thread(target=target, args=args, name="pg-proxy-pump")
                self._threads.append(thread)
                thread.start()

    def _pump_to_server(self, client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                server.sendall(data)
        _cut(server)

    def _pump_to_client(self, server: socket.socket, client: socket.socket) -> None:
        """Forward the server's messages whole, watching for the answer to a COMMIT."""
        pending = b""
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                pending += data
                forward = 0  # bytes of whole messages that may go to the client
                while len(pending) - forward >= _HEADER.size:
                    kind, length = _HEADER.unpack_from(pending, forward)
                    end = forward + 1 + length
                    if end > len(pending):
                        break
                    body = pending[forward + _HEADER.size : end]
                    if kind == b"C" and body.startswith(b"COMMIT\x00") and self._take_arm():
                        client.sendall(pending[:forward])
                        self.dropped.set()
                        _cut(client)
                        _cut(server)
                        return
                    forward = end
                client.sendall(pending[:forward])
                pending = pending[forward:]
        _cut(client)

    def _take_arm(self) -> bool:
        with self._lock:
            armed, self._armed = self._armed, False
            return armed


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
