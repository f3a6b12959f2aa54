"""Who may use the page, decided per request from its headers alone (pure functions).

* **Token.** When one is configured every request carries it: ``Authorization: Bearer``, or
  the cookie that one visit with ``?token=`` sets (HttpOnly, SameSite=Strict; the cookie holds
  a digest of the token, not the token). Without a token the page listens on loopback only
  (the configuration refuses anything else), and the ``Host`` header must then name loopback
  too: a web site that re-points its own name at 127.0.0.1 (DNS rebinding) is refused.
* **Cross-site requests.** Only POST changes anything, and a POST must come from the page
  itself: ``Sec-Fetch-Site`` (when sent) same-origin, ``Origin`` (when sent) this host, and
  the form's CSRF token right.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

COOKIE = "rotwatchd_token"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


def cookie_value(token: str) -> str:
    """What the cookie holds for ``token``: a digest, so the secret itself is not stored."""
    return hmac.new(token.encode(), b"rotwatchd web cookie", hashlib.sha256).hexdigest()


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header."""
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_ok(token: str | None, *, presented: str | None, cookie: str | None) -> bool:
    """Whether a request shows ``token`` (None: no token configured, everyone may)."""
    if token is None:
        return True
    if presented is not None and hmac.compare_digest(presented.encode(), token.encode()):
        return True
    return cookie is not None and hmac.compare_digest(cookie.encode(),
                                                      cookie_value(token).encode())


def host_is_loopback(host_header: str) -> bool:
    """Whether a ``Host`` header (``127.0.0.1:8750``, ``[::1]:8750``, ``localhost``) names
    this machine's loopback."""
    try:
        host = urlsplit(f"//{host_header}").hostname or ""
    except ValueError:  # "[::1" and other broken headers
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cross_site(*, fetch_site: str | None, origin: str | None, host_header: str,
               scheme: str = "http") -> str | None:
    """Why a state-changing request must be refused as coming from another site, or None
    (``fetch_site``, ``origin``: its Sec-Fetch-Site and Origin headers, None when absent)."""
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"a {fetch_site} request"
    if origin is not None and origin != f"{scheme}://{host_header}":
        return f"a request from {origin}"
    return None


def csrf_ok(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
