"""A plain HTTP client over real sockets for the web page tests (no redirects followed)."""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlencode, urlsplit


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


def call(base: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
         form: dict[str, str] | None = None) -> Reply:
    """``method`` ``path`` on the page at ``base`` (``http://host:port/``); a listen address
    of 0.0.0.0 is reached on 127.0.0.1."""
    parts = urlsplit(base)
    host = "127.0.0.1" if parts.hostname == "0.0.0.0" else parts.hostname
    assert host is not None and parts.port is not None
    sent = dict(headers or {})
    body = None
    if form is not None:
        body = urlencode(form)
        sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
    connection = http.client.HTTPConnection(host, parts.port, timeout=20)
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def same_origin(base: str) -> dict[str, str]:
    """The headers a browser sends with a POST from the page itself."""
    parts = urlsplit(base)
    return {"Origin": f"http://{parts.netloc.replace('0.0.0.0', '127.0.0.1')}",
            "Sec-Fetch-Site": "same-origin"}
