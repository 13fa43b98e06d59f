"""Browser sessions of the dashboard: an admin API key traded at ``POST /login`` for a short-lived cookie.

A browser cannot send an ``Authorization`` header when a person opens a URL, and a key in the
URL would land in the history, proxies and access logs. So the login form takes the key once
and answers a cookie holding a random session id (``secrets.token_urlsafe``, 256 bits); the
server keeps only the id's SHA-256, the key id behind it and its expiry.

Sessions live in this process's memory, per app: they do not survive a restart and are not
shared between server processes (a person logs in again). The store is bounded
(:data:`MAX_SESSIONS`; a login beyond it ends the oldest session) and every session ends
``auth.session_ttl_s`` after its login, at ``POST /logout``, or as soon as its key is revoked
or loses the admin role. Login attempts are throttled per client address
(:data:`LOGIN_ATTEMPTS_PER_MINUTE`, a token bucket each).

The cookie opens :data:`SESSION_ROUTES` for GET only; every other route, and anything that
changes state, still needs the key header, so a cross-site request can ride on the cookie to
no route that acts. The login and logout forms themselves are checked with :func:`same_origin`.
Standard library only (besides the token bucket), so it is cheap to test.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from lmforge.serve._admission import KeyedBuckets

__all__ = [
    "COOKIE_NAME",
    "LOGIN_ATTEMPTS_PER_MINUTE",
    "MAX_SESSIONS",
    "SESSION_ROUTES",
    "LoginRequired",
    "LoginThrottle",
    "Session",
    "SessionStore",
    "local_path",
    "same_origin",
]

COOKIE_NAME = "lmforge_session"
SESSION_ROUTES = frozenset({"/dashboard"})
"""The routes a session cookie opens, for GET requests only; everything else needs the key header."""
DEFAULT_NEXT = "/dashboard"
MAX_SESSIONS = 1000
"""Sessions one app holds at once; a login beyond it ends the oldest session."""
LOGIN_ATTEMPTS_PER_MINUTE = 10
"""``POST /login`` attempts a client address may make per minute (and at once, after an idle spell)."""
_TOKEN_CHARS = 64  # longer than any id this store makes (43 characters): refuse before hashing
_CLIENTS_LIMIT = 10_000  # client addresses whose login buckets are kept (least recently used dropped)


class LoginRequired(Exception):
    """A browser asked for a session route without a key or a valid session: send it to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class Session:
    """One login: the key behind it and when (on the store's clock) it ends."""

    key_id: str
    key_name: str
    expires: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionStore:
    """Sessions of one app, in memory, keyed by the SHA-256 of their id.

    Args:
        ttl_s: how long a session lasts after its login.
        max_sessions: most sessions held; a new one beyond it ends the oldest.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, ttl_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # oldest login first

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, key_id: str, key_name: str) -> str:
        """A new session for ``key_id``; returns its id (the cookie's value), which is not stored."""
        now = self._clock()
        self._purge(now)
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        token = secrets.token_urlsafe(32)
        self._sessions[_digest(token)] = Session(key_id, key_name, now + self.ttl_s)
        return token

    def get(self, token: str | None) -> Session | None:
        """The live session ``token`` names, or None (unknown, malformed, ended or expired)."""
        if not token or len(token) > _TOKEN_CHARS:
            return None
        digest = _digest(token)
        session = self._sessions.get(digest)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._sessions[digest]
            return None
        return session

    def end(self, token: str | None) -> Session | None:
        """End the session ``token`` names; the session it was (None when there was none, or it had expired)."""
        session = self.get(token)
        if session is not None and token is not None:
            self._sessions.pop(_digest(token), None)
        return session

    def end_key(self, key_id: str) -> int:
        """End every session of ``key_id`` (its key was revoked or lost the admin role); how many there were."""
        ended = [d for d, s in self._sessions.items() if s.key_id == key_id]
        for digest in ended:
            del self._sessions[digest]
        return len(ended)

    def _purge(self, now: float) -> None:
        # Every session lasts ttl_s, so the oldest login is the first to expire.
        while self._sessions:
            digest, session = next(iter(self._sessions.items()))
            if session.expires > now:
                return
            del self._sessions[digest]


class LoginThrottle:
    """``POST /login`` attempts per client address: a token bucket each, so keys cannot be guessed at speed.

    Args:
        per_minute: attempts a client may make per minute, and at once after being idle.
    """

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1, math.ceil(per_minute))
        self._buckets = KeyedBuckets(_CLIENTS_LIMIT)

    def take(self, client: str) -> int:
        """0 when ``client`` may try now, else the whole seconds until it may."""
        wait = self._buckets.take(client, self.rate, self.burst)
        return max(1, math.ceil(wait)) if wait > 0 else 0


def local_path(value: str | None, default: str = DEFAULT_NEXT) -> str:
    """``value`` when it is a path on this server (``/...``), else ``default``: never a redirect elsewhere.

    Refused: absolute and scheme-relative URLs (``https://x``, ``//x``), backslashes (browsers read
    ``/\\x`` as ``//x``), control characters and whitespace (browsers drop tabs and newlines, so
    ``/\\t/x`` is ``//x`` too), and anything over 512 characters.
    """
    if not value or len(value) > 512 or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def _authority(netloc: str) -> str:
    """``host[:port]`` in lower case, without the default port of http or https."""
    netloc = netloc.strip().lower()
    for default_port in (":80", ":443"):
        if netloc.endswith(default_port):
            return netloc[: -len(default_port)]
    return netloc


def same_origin(host: str | None, origin: str | None, referer: str | None) -> bool:
    """Whether a form post came from a page of this server (the CSRF check of ``/login`` and ``/logout``).

    Browsers send ``Origin`` with every POST (``Referer`` is the fallback for the few that do not);
    it must name the host the request was sent to (its ``Host`` header, which a page on another site
    cannot set). A request with neither header, or with ``Origin: null`` (sandboxed frames, opaque
    redirects), is refused. The scheme is not compared, so a TLS-terminating proxy that passes the
    ``Host`` header through keeps working.
    """
    if not host:
        return False
    claimed = origin if origin else referer
    if not claimed or claimed.strip() == "null":
        return False
    parts = urlsplit(claimed.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return _authority(parts.netloc) == _authority(host)
