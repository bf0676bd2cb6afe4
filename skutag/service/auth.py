"""Who is calling: API tokens (``Authorization: Bearer``) for ``/v1``, operator sessions with CSRF
tokens for the dashboard."""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request

from skutag.store.repository import Store

SESSION_USER = "user"
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
    return request.session.get(SESSION_USER)


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
    """Slows password guessing: after ``limit`` failures for a username or a client address within
    ``window_s`` seconds, further attempts are refused until the window passes."""

    def __init__(self, limit: int = 10, window_s: float = 900.0):
        import threading

        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        self._failures[key] = times
        return times

    def blocked(self, *keys: str) -> bool:
        import time

        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(key, now)) >= self.limit for key in keys)

    def failed(self, *keys: str) -> None:
        import time

        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
