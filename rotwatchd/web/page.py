"""The web page of one running daemon: its history and metrics, and the server while it runs.

``WebPage(daemon)`` starts following the daemon (each processed file, each power-state
change) and keeps doing so across restarts of the server; :meth:`start` serves the page as
``web`` says (on an address of its own, or on the sockets systemd passes), :meth:`stop` ends
it, :meth:`reconfigure` follows a reload (a changed ``web`` section restarts the server). A
page that cannot listen is one log line: the daemon's work (turning photos) matters more than
its page, so it carries on without it.
"""

from __future__ import annotations

import importlib.util
import logging
import secrets
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from rotwatchd.config import Config, WebConfig
from rotwatchd.config.schema import is_loopback
from rotwatchd.service.processor import Result
from rotwatchd.web.activation import ActivationError, passed_sockets, where
from rotwatchd.web.history import MinuteHistory
from rotwatchd.web.metrics import DaemonMetrics, Gauges
from rotwatchd.web.server import WebServer
from rotwatchd.web.thumbs import THUMB_FOLDER, ThumbnailCache

if TYPE_CHECKING:
    from rotwatchd.service.daemon import Daemon

log = logging.getLogger(__name__)


#: What the page needs besides the daemon: the ``web`` extra. Looked for at start, imported at
#: the first request (rotwatchd.web.app, DaemonMetrics.exposition).
REQUIRED = ("flask", "jinja2", "prometheus_client")


def missing_libraries() -> list[str]:
    """The libraries of the ``web`` extra that are not installed (none: the page can run)."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def page_for(daemon: Daemon) -> WebPage | None:
    """The page of ``daemon`` (a :data:`rotwatchd.service.daemon.PageFactory`); None, after one
    error line, when the ``web`` extra is not installed: the daemon runs on without it."""
    missing = missing_libraries()
    if missing:
        log.error("web page off: %s not installed (install rotwatchd[web], or set "
                  "web.listen: null)", ", ".join(missing))
        return None
    return WebPage(daemon)


class WebPage:
    """History, metrics and the server of ``daemon``'s page."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self.history = MinuteHistory()
        self.metrics = DaemonMetrics(Gauges(queue=self._queue, power_state=daemon.power_state,
                                            review_backlog=daemon.review.backlog))
        self.thumbs = ThumbnailCache(daemon.config.state_dir / THUMB_FOLDER,
                                     max_pixels=daemon.config.limits.max_pixels)
        self._csrf = secrets.token_urlsafe(32)  # one per run: pages open stay valid on reload
        self.server: WebServer | None = None
        self._web: WebConfig | None = None
        daemon.add_timed_result_listener(self._on_result)
        daemon.add_status_listener(self._on_status)
        self.history.power_state(daemon.power_state())

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def start(self, web: WebConfig) -> None:
        """Serve the page on ``web.listen``; one log line and no page when it cannot listen."""
        self._web = web
        if web.listen is None or self.server is not None:
            return
        self.thumbs.prune(item.sha256 for item in self._daemon.review.waiting())
        app = _LazyApp(self._daemon, self, web.token)
        if isinstance(web.listen, str):
            server = self._on_passed_sockets(app, web.token)
            if server is None:
                return
            how = " (socket from systemd)"
        else:
            host, port = web.listen
            try:
                server = WebServer(app, host, port)
            except OSError as exc:
                log.error("web page off: cannot listen on %s:%d: %s (the daemon runs on "
                          "without it; change web.listen and reload)", host, port,
                          exc.strerror or exc)
                return
            how = ""
        server.start()
        self.server = server
        log.info("web page on %s%s%s", server.url, how,
                 " (token required)" if web.token else "")

    @staticmethod
    def _on_passed_sockets(app: WSGIApplication, token: str | None) -> WebServer | None:
        """A server on copies of the sockets systemd passed, or None and one log line: none
        passed, or one bound beyond loopback while no token is set (the rule that
        ``web.listen`` follows, applied to the address systemd bound)."""
        try:
            sockets = passed_sockets()
        except ActivationError as exc:
            log.error("web page off: web.listen is systemd, but %s (the daemon runs on "
                      "without it)", exc)
            return None
        if token is None:
            open_ = [where(s) for s in sockets if not is_loopback(s.getsockname()[0])]
            if open_:
                log.error("web page off: the socket systemd passed listens on %s, not a "
                          "loopback address: set web.token or web.token_file, or anyone who "
                          "can reach it could see and settle your photos", ", ".join(open_))
                return None
        return WebServer.on_sockets(app, [sock.dup() for sock in sockets])

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def reconfigure(self, config: Config) -> None:
        """After a reload: new limits for thumbnails; a changed ``web`` restarts the server."""
        self.thumbs.max_pixels = config.limits.max_pixels
        if config.web != self._web:
            self.stop()
            self.start(config.web)

    def _queue(self) -> dict[str, int]:
        queue = self._daemon.queue
        return {"queued": queue.depth, "running": queue.running,
                "settling": self._daemon.settler.pending()}

    def _on_result(self, result: Result, seconds: float | None) -> None:
        self.metrics.observe(str(result.outcome), seconds)
        self.history.add_result(str(result.outcome), seconds)

    def _on_status(self) -> None:
        self.history.power_state(self._daemon.power_state())


class _LazyApp:
    """The WSGI application, built (Flask and the page's code imported) at the first request:
    a daemon whose page nobody opens carries only its accept loop and tallies."""

    def __init__(self, daemon: Daemon, page: WebPage, token: str | None) -> None:
        self._daemon, self._page, self._token = daemon, page, token
        self._lock = threading.Lock()
        self._app: WSGIApplication | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            if self._app is None:
                from rotwatchd.web.app import PageSources, create_app

                page = self._page
                self._app = create_app(PageSources(
                    review=self._daemon.review, snapshot=self._daemon.snapshot,
                    history=page.history, metrics=page.metrics, thumbs=page.thumbs,
                    csrf=page._csrf, token=self._token))
            app = self._app
        return app(environ, start_response)
