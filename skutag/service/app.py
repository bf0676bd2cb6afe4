"""The FastAPI application: ``create_app(settings, tagger_factory=..., retrainer=...)``.

The database is opened (and migrated) when the app is created; the model is loaded once in the
app's lifespan. Every bad input gets a 4xx JSON answer naming the field (HTML pages get an
error page), never a 500.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from skutag.config import SkutagConfig
from skutag.service.config import ServiceConfig
from skutag.policy.fields import InvalidInput
from skutag.service.engine import TaggingService
from skutag.service.guards import NulGuard, TrustedProxies
from skutag.service.retrain import Retrainer, TaggerFactory, default_retrainer, default_tagger_factory
from skutag.store.repository import Store
from skutag.store.views import Conflict, NotFound

log = logging.getLogger("skutag.service")
RETRY_AFTER_S = 5  # what a 503 (busy decoding) asks the client to wait
HERE = Path(__file__).resolve().parent


def create_app(
    settings: ServiceConfig | None = None,
    *,
    tagger_factory: TaggerFactory | None = None,
    retrainer: Retrainer | None = None,
    store: Store | None = None,
    config=None,
) -> FastAPI:
    """Build the app. ``tagger_factory(model_dir_or_None) -> Tagger`` loads a model version;
    ``retrainer`` trains a candidate from corrections (defaults: the fusion pipeline's)."""
    settings = settings or ServiceConfig()
    store = store or Store.open(settings.db_url or None)
    decision = config.decision if config is not None else SkutagConfig.load().decision
    service = TaggingService(settings, store, tagger_factory or default_tagger_factory(config),
                             retrainer if retrainer is not None else default_retrainer(config), decision=decision)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        service.retraining.schedule.start()  # service.retrain_every_hours; nothing when 0
        try:
            yield
        finally:
            service.retraining.schedule.stop()

    app = FastAPI(title="skutag", version="1", lifespan=lifespan,
                  summary="Tag products from photo + title + price; review and correct; retrain from corrections.")
    app.state.settings, app.state.store, app.state.service = settings, store, service

    secret = settings.secret_key or store.setting("session_secret", lambda: secrets.token_urlsafe(48))
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie="skutag_session",
                       max_age=settings.session_max_age_s, same_site="strict", https_only=settings.cookie_secure)
    app.add_middleware(NulGuard)
    app.add_middleware(TrustedProxies, trusted=settings.trusted_proxies)
    app.add_middleware(RequestSizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders)
    _install_error_handlers(app)

    from skutag.service import api, dashboard, review_api

    app.include_router(api.router)
    app.include_router(review_api.router)
    app.include_router(api.images)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return {"ok": True, "model_version": service.model_version, "database": store.backend}

    return app


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/v1") and "text/html" in request.headers.get("accept", "")


def _error(request: Request, status: int, message: str, field: str | None = None, headers=None):
    if _wants_html(request):
        from skutag.service.dashboard import error_page

        return error_page(request, status, message)
    body = {"detail": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


# Starlette's form parsers refuse a text field over 1 MiB with a 400 whose text starts so
_FORM_PART_TOO_BIG = ("Part exceeded maximum size", "Field exceeded maximum size")
FORM_FIELD_LIMIT = 1024 * 1024


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput):
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
        return _error(request, exc.status, exc.message if exc.field in exc.message else str(exc), exc.field,
                      headers=headers)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        return _error(request, 404, str(exc))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict):
        return _error(request, 409, str(exc))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and Starlette's own (form parsing)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 401 and _wants_html(request):
            from fastapi.responses import RedirectResponse

            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        if exc.status_code == 400 and str(exc.detail).startswith(_FORM_PART_TOO_BIG):  # multipart or urlencoded
            return _error(request, 413, f"a form field is over the {FORM_FIELD_LIMIT}-byte limit (title, price, "
                                        "id and brand are short text; send the photo as the image file part)")
        return _error(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)  # anything else: the service's JSON error, the details in the log
    async def internal_error(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(request, 500, "internal error (logged on the server)")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
            problems.append(f"{location or 'request'}: {error.get('msg', 'invalid')}")
        return _error(request, 422, "; ".join(problems) or "invalid request")


class RequestSizeLimit:
    """Refuse bodies over ``max_bytes`` with 413 before reading them (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
                await JSONResponse({"detail": "bad Content-Length header"}, status_code=400)(scope, receive, send)
                return
            if too_big:
                await JSONResponse({"detail": f"request body is {int(declared)} bytes, over the "
                                              f"{self.max_bytes}-byte limit"}, status_code=413)(scope, receive, send)
                return
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"request body over the {self.max_bytes}-byte limit")
            return message

        await self.app(scope, limited_receive, send)


class SecurityHeaders:
    """CSP without inline scripts, no framing, no MIME sniffing."""

    HEADERS = [
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; script-src 'self'; "
                                     b"style-src 'self'; frame-ancestors 'none'; form-action 'self'"),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ("/docs", "/redoc"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + self.HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)
