"""Request guards that hold for every endpoint, before any handler reads the request.

``TrustedProxies``: the client address is the peer's, unless the peer is one of ``service.trusted_proxies``;
then it is the nearest address in ``X-Forwarded-For`` that is not a trusted proxy. A client cannot pick its
own address (and dodge the login throttle) by sending the header.

``NulGuard``: a NUL character cannot be stored in PostgreSQL text (SQLite takes it), so a NUL anywhere in a
request's path, query or text body (JSON, form) is refused with the same 422 on both databases, before
anything is stored; photo bytes in multipart parts are binary and pass (the text parts are checked by the
product field rules, ``skutag.policy.fields``).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_TEXT_BODIES = (b"application/json", b"application/x-www-form-urlencoded")
# endpoints that check each item of the body on its own (the field rules refuse a NUL per item, the others go on)
ITEM_BY_ITEM = ("/v1/products:batch",)


def _has_nul(data: bytes, *, json_body: bool) -> bool:
    lowered = data.lower()
    if b"\x00" in data:
        return True
    return b"\\u0000" in lowered if json_body else b"%00" in lowered


class NulGuard:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        if "\x00" in scope["path"] or _has_nul(raw_path, json_body=False) \
                or _has_nul(scope.get("query_string", b""), json_body=False):
            await _refuse(scope, send, "path", "the request's path or query contains a NUL character")
            return
        kind = dict(scope.get("headers") or []).get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind not in _TEXT_BODIES or scope["path"] in ITEM_BY_ITEM:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = bytearray()
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except HTTPException as exc:  # the size limit, read here before the app's own error handling
            await _respond(send, exc.status_code, {"detail": str(exc.detail)})
            return
        if _has_nul(bytes(body), json_body=kind == b"application/json"):
            field = _nul_field(bytes(body), json_body=kind == b"application/json")
            await _refuse(scope, send, field, "contains a NUL character")
            return
        pending = iter(messages)

        async def replay() -> Message:
            try:
                return next(pending)
            except StopIteration:
                return await receive()

        await self.app(scope, replay, send)


def _nul_field(body: bytes, *, json_body: bool) -> str:
    """The request field holding the NUL (``title``, ``products[0].brand``), as the field rules name it;
    ``body`` when the body cannot be read as text fields."""
    try:
        if not json_body:
            for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                if "\x00" in key or "\x00" in value:
                    return key.replace("\x00", "") or "body"
            return "body"
        return _json_nul_path(json.loads(body)) or "body"
    except ValueError:
        return "body"


def _json_nul_path(value, path: str = "") -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return path or "body"
            found = _json_nul_path(item, f"{path}.{key}" if path else key)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _json_nul_path(item, f"{path}[{i}]")
            if found:
                return found
    return None


async def _refuse(scope: Scope, send: Send, field: str, message: str) -> None:
    await _respond(send, 422, {"detail": f"{field}: {message}", "field": field})


async def _respond(send: Send, status: int, content: dict) -> None:
    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class TrustedProxies:
    def __init__(self, app: ASGIApp, trusted: tuple[str, ...] = ()):
        self.app, self.trusted = app, frozenset(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted:
            peer = (scope.get("client") or ("", 0))[0]
            if peer in self.trusted:
                forwarded = dict(scope.get("headers") or []).get(b"x-forwarded-for", b"").decode("latin-1")
                hops = [h.strip() for h in forwarded.split(",") if h.strip()]
                client = next((h for h in reversed(hops) if h not in self.trusted), None)
                if client:
                    scope = {**scope, "client": (client, 0)}
        await self.app(scope, receive, send)
