"""Serving the WSGI application without a single wake-up while nobody is looking.

The standard library's ``serve_forever`` wakes every 0.5 s to check for shutdown; this accept
loop instead blocks in one ``select`` on the listening socket and a wake-up pipe, with no
timeout, and is stopped by a byte on that pipe. Each connection gets a thread (a browser keeps
idle connections open; one of them must not hold up the page); :meth:`WebServer.stop` shuts
those connections down and joins every thread, so nothing outlives the daemon.

The server binds its own socket (``WebServer(app, host, port)``) or serves sockets made by
someone else (:meth:`WebServer.on_sockets`: the ones systemd passes, see ``activation``); it
never creates a network socket in that case, which a service restricted to AF_UNIX could not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import WSGIApplication

from rotwatchd.threads.stoppable import StoppableThread

log = logging.getLogger(__name__)


class _Handler(WSGIRequestHandler):
    #: A connection idle this long is closed (one wake-up, then nothing).
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
        log.debug("%s %s", self.address_string(), format % args)


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, as socketserver.TCPServer would make it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socketserver.TCPServer.request_queue_size)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the connection threads

    def __init__(self, listening: socket.socket) -> None:
        """Serve on ``listening`` (bound and listening already; closed by server_close)."""
        self.address_family = listening.family
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        # Not TCPServer.__init__: it would create a socket of its own.
        socketserver.BaseServer.__init__(self, listening.getsockname(), _Handler)
        self.socket = listening
        # Not HTTPServer.server_bind: it asks DNS for this host's name (getfqdn), slow or
        # hanging without a network, and only used in CGI variables.
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every connection thread blocked reading an idle connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("web request from %s failed", client_address, exc_info=True)


class WebServer:
    """``app`` served on ``host:port`` (port 0: a free one, see :attr:`port`).

    Binds when constructed (raises OSError: port in use, address not on this machine, no
    permission); :meth:`start` starts the accept thread, :meth:`stop` ends it and every
    connection thread."""

    def __init__(self, app: WSGIApplication, host: str, port: int) -> None:
        self._setup(app, [_bind(host, port)])

    @classmethod
    def on_sockets(cls, app: WSGIApplication, sockets: list[socket.socket]) -> WebServer:
        """``app`` served on every one of ``sockets`` (listening TCP sockets, at least one),
        which the server owns from now on: :meth:`stop` closes them. Pass ``dup()`` copies
        to keep the originals listening for a later server."""
        if not sockets:
            raise ValueError("no socket to serve on")
        server = cls.__new__(cls)
        server._setup(app, sockets)
        return server

    def _setup(self, app: WSGIApplication, sockets: list[socket.socket]) -> None:
        self._servers = [_Server(sock) for sock in sockets]
        for server in self._servers:
            server.set_app(app)
            server.timeout = 0  # handle_request() after select(): never blocks again
        host, port = self._servers[0].server_address[:2]
        self.host, self.port = str(host), int(port)
        self._wake_r, self._wake_w = os.pipe()
        self._loop = _AcceptLoop(self._servers, self._wake_r, self._wake_w)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        """Stop accepting, close open connections, join every thread. Idempotent."""
        if self._wake_w < 0:
            return
        self._loop.stop_and_join()
        for server in self._servers:
            server.close_connections()
            server.server_close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1


class _AcceptLoop(StoppableThread):
    """Handles requests on every server until stopped: one select() without timeout over the
    listening sockets and the wake pipe, to which :meth:`on_stop` writes a byte."""

    def __init__(self, servers: list[_Server], wake_r: int, wake_w: int) -> None:
        super().__init__("rotwatchd-web")
        self._servers = servers
        self._wake_r, self._wake_w = wake_r, wake_w

    def on_stop(self) -> None:
        os.write(self._wake_w, b"s")

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for server in self._servers:
                selector.register(server, selectors.EVENT_READ, server)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = selector.select()  # no timeout: no polling
                if any(key.fileobj == self._wake_r for key, _ in ready):
                    return
                for key, _ in ready:
                    key.data.handle_request()
