"""Who may use the web view, and which requests may change anything.

* **Token.** On 127.0.0.1 (the default) the view needs no token, but only ``Host:
  127.0.0.1`` / ``localhost`` is answered, so a web page that rebinds its own name
  to 127.0.0.1 gets nothing. Any other address needs a token (``--token``, or one
  made with :mod:`secrets` and printed at start). Every route checks it: the
  ``X-CytoEdge-Token`` header, ``Authorization: Bearer``, or the HttpOnly,
  SameSite=Strict cookie set when the printed address (``/?token=...``) is opened.
  A wrong or missing token gets a bare 401.
* **Forgery.** A state-changing request is a POST (the routes accept nothing else)
  whose ``Origin`` (else ``Referer``) is this server, carrying the CSRF token of its
  session (a form field or the ``X-CSRF-Token`` header).
* **Paths.** Crops are served by cell id, and only when the file resolves inside
  the store's crops folder (:meth:`edge_app.store.Store.crop_file`).
"""

from __future__ import annotations

import hmac
import secrets
import string
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from cytoedge.edge_app.errors import CytoEdgeError

TOKEN_COOKIE = "cytoedge_token"
TOKEN_HEADER = "X-CytoEdge-Token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
MIN_TOKEN = 16
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_.~")
LOCAL_NAMES = ("127.0.0.1", "localhost")  # the Host values answered without a token


def is_local(host: str) -> bool:
    """127.0.0.1 or ``localhost``: the only bindings that go without a token (and answer only those Host names).

    Any other address, other loopback addresses included (127.0.0.2 would be reached under a
    Host name the view does not answer without a token), gets a generated token.

    >>> is_local("127.0.0.1"), is_local("localhost"), is_local("127.0.0.2"), is_local("0.0.0.0")
    (True, True, False, False)
    """
    return host in LOCAL_NAMES


def has_control_chars(text: str) -> bool:
    r"""Any C0 control character or DEL (CR, LF, tab, NUL ...).

    >>> has_control_chars("/review"), has_control_chars("/\r\nSet-Cookie:x"), has_control_chars("/\t/evil.example")
    (False, True, True)
    """
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def local_path(path: str) -> str:
    r"""``path`` as a redirect target that stays on this site: percent-encoded, one leading slash.

    A browser drops tabs and newlines from a ``Location`` and reads ``//host`` or ``/\\host`` as
    another site, so every such character is encoded and leading slashes collapse to one.

    >>> local_path("/review"), local_path("/\t/evil.example"), local_path("//evil.example"), local_path("/\\evil")
    ('/review', '/%09/evil.example', '/evil.example', '/%5Cevil')
    """
    return "/" + quote(path, safe="/-._~!$'()*+,;=:@").lstrip("/")


def resolve_token(host: str, token: str | None) -> str | None:
    """The token the server will demand: the one given, a new one off loopback, or None on loopback."""
    if token is not None:
        if len(token) < MIN_TOKEN or not set(token) <= _TOKEN_CHARS:
            raise CytoEdgeError(f"--token must be at least {MIN_TOKEN} characters of letters, digits, '-', '_', "
                                "'.' or '~': leave it out to have one generated")
        return token
    return None if is_local(host) else secrets.token_urlsafe(24)


def token_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def presented_token(headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
    """The token a request carries: header, bearer, or cookie (the query string is handled by the login redirect)."""
    if TOKEN_HEADER in headers:
        return headers[TOKEN_HEADER]
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[7:].strip()
    return cookies.get(TOKEN_COOKIE)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def same_origin(host_url: str, headers: Mapping[str, str]) -> bool:
    """Is the request's Origin (or, without one, its Referer) this server? Neither present: no.

    >>> same_origin("http://pi:8080/", {"Origin": "http://pi:8080"})
    True
    >>> same_origin("http://pi:8080/", {"Origin": "http://evil.example"})
    False
    >>> same_origin("http://pi:8080/", {"Referer": "http://pi:8080/review?slide=a"})
    True
    >>> same_origin("http://pi:8080/", {})
    False
    """
    own = urlsplit(host_url)
    origin = headers.get("Origin")
    if origin is not None:
        if origin == "null":
            return False
        got = urlsplit(origin)
    elif headers.get("Referer"):
        got = urlsplit(headers["Referer"])
    else:
        return False
    return (got.scheme, got.netloc.lower()) == (own.scheme, own.netloc.lower())
