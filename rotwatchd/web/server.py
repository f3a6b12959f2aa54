"""Serving the WSGI application without a single wake-up while nobody is looking.

The standard library's ``serve_forever`` wakes every 0.5 s to check for shutdown; this accept
loop instead blocks in one ``select`` on the listening socket and a wake-up pipe, with no
timeout, and is stopped by a byte on that pipe. Each connection gets a thread (a browser keeps
idle connections open; one of them must not hold up the page); :meth:`WebServer.stop` shuts
those connections down and joins every thread, so nothing outlives the daemon.
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

log = logging.getLogger(__name__)


class _Handler(WSGIRequestHandler):
    #: A connection idle this long is closed (one wake-up, then nothing).
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
        log.debug("%s %s", self.address_string(), format % args)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the connection threads

    def __init__(self, host: str, port: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for this host's name (getfqdn): slow or hanging
        # without a network, and only used in CGI variables.
        socketserver.TCPServer.server_bind(self)
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
        self._server = _Server(host, port)
        self._server.set_app(app)
        self._server.timeout = 0  # handle_request() after select(): never blocks again
        self.host = host
        self.port = int(self._server.server_address[1])
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="rotwatchd-web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}  # no timeout: no polling
                if self._wake_r in ready:
                    return
                self._server.handle_request()

    def stop(self) -> None:
        """Stop accepting, close open connections, join every thread. Idempotent."""
        if self._wake_w < 0:
            return
        if self._thread.is_alive():
            os.write(self._wake_w, b"s")
            self._thread.join()
        self._server.close_connections()
        self._server.server_close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1
