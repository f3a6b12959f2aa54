"""The Flask application: the review page, the status page, ``/metrics``.

Items are addressed by their id only; no request names a file. The only files it sends are
thumbnails from the cache (made from the item's review copy, or its original while the copy is
gone) and its own two assets, read once from the package. Access rules: ``guard``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, url_for
from markupsafe import Markup

from rotwatchd.formats.sniff import ImageProblem, UnsupportedFormat
from rotwatchd.service.review import (
    CORRECTIONS,
    AlreadySettled,
    CannotSettle,
    ReviewItem,
    ReviewQueue,
    UnknownItem,
)
from rotwatchd.web import guard
from rotwatchd.web.history import MinuteHistory
from rotwatchd.web.metrics import CONTENT_TYPE, DaemonMetrics
from rotwatchd.web.plots import bar_chart
from rotwatchd.web.thumbs import ThumbnailCache

log = logging.getLogger(__name__)

#: Items shown at once (oldest first); the page fetches the next ones when these are done.
PAGE_ITEMS = 60
TURN_LABELS = {0: "as it is", 90: "turn right", 180: "upside down", 270: "turn left"}
ASSETS = {"app.css": "text/css; charset=utf-8", "review.js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
NO_PREVIEW = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><rect width="100" '
              'height="100" fill="#eee"/><text x="50" y="54" font-size="12" text-anchor="middle" '
              'fill="#666">no preview</text></svg>')


@dataclass(frozen=True)
class PageSources:
    """What the pages show and act on; ``token`` None means no token is asked for."""

    review: ReviewQueue
    snapshot: Callable[[], dict[str, Any]]
    history: MinuteHistory
    metrics: DaemonMetrics
    thumbs: ThumbnailCache
    csrf: str
    token: str | None


def create_app(sources: PageSources) -> Flask:
    """The WSGI application over ``sources``."""
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024, JSON_SORT_KEYS=False)
    assets = {name: (resources.files(__package__).joinpath("assets", name).read_bytes(), kind)
              for name, kind in ASSETS.items()}

    @app.before_request
    def check_access() -> Response | None:
        return _refusal(sources)

    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/")
    def index() -> Response:
        return redirect(url_for("review_page"), 303)  # type: ignore[return-value]

    @app.get("/review")
    def review_page() -> str:
        waiting = sources.review.waiting()
        return render_template(
            "review.html", items=waiting[:PAGE_ITEMS], more=max(0, len(waiting) - PAGE_ITEMS),
            backlog=len(waiting), csrf=sources.csrf, corrections=CORRECTIONS,
            labels=TURN_LABELS, name=_name, percent=percent_text, ago=_ago, now=time.time())

    @app.post("/review/<int:item_id>")
    def settle(item_id: int) -> Any:
        return _settle(sources, item_id)

    @app.get("/review/<int:item_id>/thumb")
    def thumb(item_id: int) -> Response:
        return _thumbnail(sources, item_id)

    @app.get("/status")
    def status_page() -> str:
        document = sources.snapshot()
        return render_template("status.html", status=document, charts=_charts(sources.history),
                               backlog=sources.review.backlog(), ago=_ago, now=time.time())

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(sources.metrics.exposition(), content_type=CONTENT_TYPE)

    @app.get("/assets/<name>")
    def asset(name: str) -> Response:
        if name not in assets:
            abort(404)
        data, kind = assets[name]
        response = Response(data, content_type=kind)
        response.headers["Cache-Control"] = "no-cache"
        return response

    return app


def _refusal(sources: PageSources) -> Response | None:
    """The response that refuses this request, or None to let it through."""
    token = sources.token
    if token is None:
        if not guard.host_is_loopback(request.host):
            return _error(403, "this page answers only to its loopback address (127.0.0.1, "
                               "localhost) unless web.token is set")
    else:
        presented = guard.bearer(request.headers.get("Authorization")) or request.args.get("token")
        if not guard.token_ok(token, presented=presented,
                              cookie=request.cookies.get(guard.COOKIE)):
            response = _error(401, "a token is needed: open this page as ?token=YOUR_TOKEN, or "
                                   "send 'Authorization: Bearer YOUR_TOKEN'")
            response.headers["WWW-Authenticate"] = 'Bearer realm="rotwatchd"'
            return response
        if "token" in request.args and request.method == "GET":
            return _keep_token_in_cookie(token)
    if request.method not in ("GET", "HEAD"):
        why = guard.cross_site(fetch_site=request.headers.get("Sec-Fetch-Site"),
                               origin=request.headers.get("Origin"), host_header=request.host,
                               scheme=request.scheme)
        presented_csrf = request.headers.get(guard.CSRF_HEADER) or \
            request.form.get(guard.CSRF_FIELD)
        if why is None and not guard.csrf_ok(sources.csrf, presented_csrf):
            why = "a form this page did not make (reload the page)"
        if why is not None:
            return _error(403, f"refused {why}")
    return None


def _keep_token_in_cookie(token: str) -> Response:
    """``?token=`` once: the same page again without it in the address, a cookie instead."""
    rest = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
    response = redirect(request.path + (f"?{rest}" if rest else ""), 303)
    response.set_cookie(guard.COOKIE, guard.cookie_value(token), httponly=True,
                        samesite="Strict", path="/", secure=request.is_secure)
    return response  # type: ignore[return-value]


def _error(status: int, message: str) -> Response:
    if request.accept_mimetypes.best == "application/json":
        response = jsonify(error=message)
        response.status_code = status
        return response
    return Response(f"{message}\n", status=status, content_type="text/plain; charset=utf-8")


def _settle(sources: PageSources, item_id: int) -> Any:
    try:
        correction = int(request.form.get("correction", ""))
        settled = sources.review.settle(item_id, correction)
    except ValueError:
        return _error(400, f"correction must be one of {', '.join(map(str, CORRECTIONS))}")
    except UnknownItem as exc:
        return _error(404, str(exc))
    except (AlreadySettled, CannotSettle) as exc:
        return _error(409, str(exc))
    except OSError as exc:
        return _error(503, f"the upright copy could not be written: {exc.strerror or exc}")
    sources.thumbs.discard(settled.item.sha256)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(id=item_id, answer=settled.item.answer, output=settled.output.name,
                       note=settled.note, backlog=sources.review.backlog())
    return redirect(url_for("review_page"), 303)


def _thumbnail(sources: PageSources, item_id: int) -> Response:
    try:
        item = sources.review.item(item_id)
        data = sources.thumbs.get(item.sha256, sources.review.image_path(item_id))
    except UnknownItem:
        abort(404)
    except (CannotSettle, ImageProblem, UnsupportedFormat, OSError) as exc:
        log.info("no preview for review item %d: %s", item_id, exc)
        return Response(NO_PREVIEW, content_type="image/svg+xml")
    response = Response(data, content_type="image/jpeg")
    # the URL carries the content hash, so what it names never changes
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


def _charts(history: MinuteHistory) -> list[tuple[str, Markup]]:
    minutes = history.minutes_until_now()
    span = f"{len(minutes) // 60} h ago" if len(minutes) >= 120 else f"{len(minutes)} min ago"
    latency = [None if m.mean_seconds is None else m.mean_seconds * 1000 for m in minutes]
    share = [None if m.review_share is None else m.review_share * 100 for m in minutes]
    return [
        ("Images per minute", Markup(bar_chart([m.handled for m in minutes], title="images per "
                                               "minute", unit="/min", span=span))),
        ("Processing time (mean per minute)", Markup(bar_chart(latency, title="processing time",
                                                               unit="ms", span=span))),
        ("Share sent to review", Markup(bar_chart(share, title="share sent to review", unit="%",
                                                  top=100, span=span))),
        ("Time asleep", Markup(bar_chart([m.asleep for m in minutes], title="seconds asleep "
                                         "per minute", unit="s/min", top=60, span=span))),
    ]


def _name(item: ReviewItem) -> str:
    return Path(item.path).name


def percent_text(value: float | None) -> str:
    """A probability (0..1) as a whole percent rounded *down* (0.9996 -> ``"99 %"``), so a
    turn the model was not sure of never reads as 100 % on the review page; None -> ``""``.
    Rounded from the float's shortest decimal form (0.29 -> ``"29 %"``)."""
    if value is None:
        return ""
    return f"{(Decimal(repr(float(value))) * 100).to_integral_value(rounding=ROUND_FLOOR)} %"


def _ago(then: float | None, now: float) -> str:
    if not then:
        return ""
    seconds = max(0, int(now - then))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"
