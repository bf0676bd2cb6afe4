"""Who is calling: API tokens (``Authorization: Bearer``) for ``/v1``, operator sessions with CSRF
tokens for the dashboard."""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request

from skutag.store.repository import Store

SESSION_USER = "user"
SESSION_STAMP = "stamp"  # the operator's session stamp at login (Store.operator_session_stamp)
SESSION_CSRF = "csrf"


def store_of(request: Request) -> Store:
    return request.app.state.store


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_token(request: Request) -> str:
    """FastAPI dependency for the API: the caller's name (``token:NAME``) or 401."""
    token = bearer_token(request)
    if token is None:
        raise HTTPException(401, "send an API token as 'Authorization: Bearer TOKEN' (create one with "
                                 "'skutag token create')", headers={"WWW-Authenticate": "Bearer"})
    name = store_of(request).check_token(token)
    if name is None:
        raise HTTPException(401, "unknown or revoked API token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return f"token:{name}"


def session_user(request: Request) -> str | None:
    """The logged-in operator, or None. The signed cookie alone is not enough: its stamp must still be the
    operator's (a logout, a password change or ``skutag operator remove`` changes it), so a copied cookie
    dies with the session it came from."""
    user = request.session.get(SESSION_USER)
    if not user:
        return None
    stamp = store_of(request).operator_session_stamp(user)
    if stamp is None or not hmac.compare_digest(stamp, str(request.session.get(SESSION_STAMP, ""))):
        request.session.clear()
        return None
    return user


def start_session(request: Request, username: str) -> None:
    """A new session for ``username`` (the next page gets a new CSRF token)."""
    request.session.clear()
    request.session[SESSION_USER] = username
    request.session[SESSION_STAMP] = store_of(request).operator_session_stamp(username) or ""


def end_session(request: Request) -> None:
    """Logout: every session of this operator ends, this cookie and any copy of it."""
    user = request.session.get(SESSION_USER)
    if user and session_user(request) == user:
        store_of(request).end_operator_sessions(user)
    request.session.clear()


def token_or_session(request: Request) -> str:
    """Photos are shown on the dashboard (session) and fetched by API clients (token)."""
    user = session_user(request)
    if user:
        return f"op:{user}"
    return require_token(request)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get(SESSION_CSRF)
    if not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = request.session.get(SESSION_CSRF)
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise HTTPException(403, "CSRF check failed: reload the page and try again")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1].rstrip("/") != host:
            raise HTTPException(403, f"CSRF check failed: request from another origin ({origin})")


class LoginThrottle:
    """Slows password guessing without locking others out: after ``limit`` failures for one (username, client)
    pair within ``window_s`` seconds, that pair is refused until the window passes; a client that fails
    ``client_limit`` times on any usernames (spraying) is refused for every username. Another operator behind
    the same address, or the same operator elsewhere, still logs in."""

    def __init__(self, limit: int = 10, client_limit: int = 100, window_s: float = 900.0):
        import threading

        self.limit, self.client_limit, self.window_s = limit, client_limit, window_s
        self._failures: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, ...], now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def blocked(self, username: str, client: str) -> bool:
        import time

        now = time.monotonic()
        with self._lock:
            return (len(self._recent(("pair", username, client), now)) >= self.limit
                    or len(self._recent(("client", client), now)) >= self.client_limit)

    def failed(self, username: str, client: str) -> None:
        import time

        now = time.monotonic()
        with self._lock:
            for key in (("pair", username, client), ("client", client)):
                self._failures[key] = self._recent(key, now) + [now]

    def succeeded(self, username: str, client: str) -> None:
        with self._lock:
            self._failures.pop(("pair", username, client), None)
