"""The operators' review dashboard (server-rendered Jinja2, autoescaped; forms with CSRF tokens).

Pages: review queue (accept / correct with a searchable category picker, keyboard-friendly),
audit samples of auto-tagged products, whitelisted categories, stats with model versions and
"retrain now". Login with an operator account (``skutag operator add``)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Annotated

import jinja2
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from skutag.service.auth import LoginThrottle, check_csrf, csrf_token, end_session, session_user, start_session
from skutag.policy.fields import InvalidInput, normalise_path
from skutag.policy.rules import audit_check
from skutag.service.engine import TaggingService
from skutag.service.monitor import charts, served_quality
from skutag.service.review_api import apply_verdict
from skutag.service.review_queue import queue as review_queue_order
from skutag.store.views import Conflict, NotFound

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))
router = APIRouter(include_in_schema=False)
PAGE_SIZE = 20
throttle = LoginThrottle()


def require_operator(request: Request) -> str:
    user = session_user(request)
    if not user:
        raise HTTPException(401, "log in first")
    return user


Operator = Annotated[str, Depends(require_operator)]


def service_of(request: Request) -> TaggingService:
    return request.app.state.service


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session.setdefault("flash", [])
    request.session["flash"] = request.session["flash"][-4:] + [[kind, message]]


def render(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
    messages = request.session.pop("flash", []) if "session" in request.scope else []
    user = session_user(request) if "session" in request.scope else None
    service = service_of(request)
    return templates.TemplateResponse(request, name, {
        "user": user, "csrf": csrf_token(request) if "session" in request.scope else "",
        "messages": messages, "model_version": service.model_version if service._tagger else None,
        "queue_count": service.store.count_products(("review", "manual", "error")) if user else 0,
        **context}, status_code=status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, message=message)


def back(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/review"
    return target


# -------------------------------------------------------------------- login
@router.get("/", response_class=HTMLResponse)
def home(request: Request):
    return back("/review" if session_user(request) else "/login")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None):
    return render(request, "login.html", next=_safe_next(next),
                  no_operators=service_of(request).store.operator_count() == 0)


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
          csrf_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/review"):
    check_csrf(request, csrf_token)
    keys = (username, request.client.host if request.client else "?")  # the peer, or what a trusted proxy says
    if throttle.blocked(*keys):
        flash(request, "Too many failed logins; try again in a few minutes.", "error")
        return back("/login?next=" + urllib.parse.quote(_safe_next(next)))
    if not username or not service_of(request).store.check_operator(username, password):
        throttle.failed(*keys)
        flash(request, "Wrong username or password.", "error")
        return back("/login?next=" + urllib.parse.quote(_safe_next(next)))
    throttle.succeeded(*keys)
    start_session(request, username)
    return back(_safe_next(next))


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form()] = ""):
    check_csrf(request, csrf_token)
    end_session(request)
    return back("/login")


# --------------------------------------------------------------- the queue
@router.get("/review", response_class=HTMLResponse)
def review_queue(request: Request, user: Operator, page: Annotated[int, Query(ge=1, le=100000)] = 1,
                 order: Annotated[str | None, Query(pattern="^(informative|arrival)$")] = None):
    """The queue in informative or arrival order; near-duplicate clusters are shown together (the cluster's
    members follow its first one), each with one verdict for all of them."""
    service = service_of(request)
    queue = review_queue_order(service.store, service.settings, order)
    ranked = {r.id: r for r in queue.ranked}
    flat = [(cluster, ranked[pid]) for cluster in queue.clusters() for pid in cluster.members]
    total = len(flat)
    shown = flat[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    groups: list[dict] = []
    for cluster, r in shown:
        if not groups or groups[-1]["id"] != cluster.id:
            groups.append({"id": cluster.id, "size": len(cluster.members), "items": []})
        groups[-1]["items"].append((service.store.get_product(r.id), r))
    here = f"/review?order={queue.how}&page={page}"
    last = request.session.get("last_action")
    return render(request, "review.html", groups=groups, items=[i for g in groups for i, _ in g["items"]],
                  total=total, page=page, pages=max(1, -(-total // PAGE_SIZE)), categories=service.categories(),
                  mode="review", order=queue.how, here=here, last_action=last)


@router.post("/review/clusters/{cluster_id}/apply")
def apply_cluster(request: Request, cluster_id: str, user: Operator, csrf_token: Annotated[str, Form()] = "",
                  category: Annotated[str, Form()] = "", back_to: Annotated[str, Form()] = "/review"):
    check_csrf(request, csrf_token)
    try:
        action = apply_verdict(service_of(request), cluster_id, category.strip() or None, f"op:{user}")
        n = len(action.content["products"])
        what = action.content["category"] or "their suggestions"
        flash(request, f"Group verdict {action.id}: {what} for {n} products.")
        request.session["last_action"] = {"id": action.id, "n": n, "what": what}
    except (InvalidInput, Conflict, NotFound) as exc:
        flash(request, exc.message if isinstance(exc, InvalidInput) else str(exc), "error")
    return back(_safe_next(back_to))


@router.post("/review/actions/{action_id}/undo")
def undo_cluster(request: Request, action_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], user: Operator,
                 csrf_token: Annotated[str, Form()] = "", back_to: Annotated[str, Form()] = "/review"):
    check_csrf(request, csrf_token)
    try:
        undone = service_of(request).store.undo_group(action_id, f"op:{user}")
        flash(request, f"Undid group verdict {action_id}: {len(undone.content['products'])} products are back in "
                       f"the queue.")
        request.session.pop("last_action", None)
    except (Conflict, NotFound) as exc:
        flash(request, str(exc), "error")
    return back(_safe_next(back_to))


@router.post("/review/{product_id}/accept")
def accept(request: Request, product_id: str, user: Operator, csrf_token: Annotated[str, Form()] = "",
           back_to: Annotated[str, Form()] = "/review"):
    check_csrf(request, csrf_token)
    try:
        service_of(request).correct(product_id, None, who=f"op:{user}", kind="accept")
        flash(request, f"Accepted {product_id}.")
    except Conflict as exc:
        flash(request, str(exc), "error")
    return back(_safe_next(back_to))


@router.post("/review/{product_id}/correct")
def correct(request: Request, product_id: str, user: Operator, csrf_token: Annotated[str, Form()] = "",
            category: Annotated[str, Form()] = "", back_to: Annotated[str, Form()] = "/review"):
    check_csrf(request, csrf_token)
    try:
        correction = service_of(request).correct(product_id, category, who=f"op:{user}", kind="correct")
        flash(request, f"{product_id}: {correction.old_path or '(none)'} → {correction.new_path}")
    except InvalidInput as exc:
        flash(request, f"{product_id}: {exc.message}", "error")
    return back(_safe_next(back_to))


# -------------------------------------------------------------------- audit
@router.get("/audit", response_class=HTMLResponse)
def audit_queue(request: Request, user: Operator, page: Annotated[int, Query(ge=1, le=100000)] = 1):
    service = service_of(request)
    items = service.store.audit_queue(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    total = service.store.count_products(audit_pending=True)
    return render(request, "review.html", items=items, total=total, page=page,
                  pages=max(1, -(-total // PAGE_SIZE)), categories=service.categories(), mode="audit")


@router.post("/audit/{product_id}/ok")
def audit_ok(request: Request, product_id: str, user: Operator, csrf_token: Annotated[str, Form()] = ""):
    check_csrf(request, csrf_token)
    service_of(request).correct(product_id, None, who=f"op:{user}", kind="audit_ok")
    flash(request, f"Audit: {product_id} is right.")
    return back("/audit")


@router.post("/audit/{product_id}/fix")
def audit_fix(request: Request, product_id: str, user: Operator, csrf_token: Annotated[str, Form()] = "",
              category: Annotated[str, Form()] = ""):
    check_csrf(request, csrf_token)
    try:
        correction = service_of(request).correct(product_id, category, who=f"op:{user}", kind="audit_fix")
        flash(request, f"Audit: {product_id} {correction.old_path} → {correction.new_path}")
    except InvalidInput as exc:
        flash(request, f"{product_id}: {exc.message}", "error")
    return back("/audit")


# ---------------------------------------------------------------- whitelist
@router.get("/whitelist", response_class=HTMLResponse)
def whitelist_page(request: Request, user: Operator):
    service = service_of(request)
    stored = service.store.resource("whitelist")
    return render(request, "whitelist.html", stored=stored.content.get("paths", []) if stored else [],
                  from_config=service.decision.always_review, categories=service.categories())


@router.post("/whitelist")
def whitelist_edit(request: Request, user: Operator, csrf_token: Annotated[str, Form()] = "",
                   action: Annotated[str, Form()] = "add", path: Annotated[str, Form()] = ""):
    check_csrf(request, csrf_token)
    store = service_of(request).store
    try:
        path = normalise_path(path)
    except InvalidInput as exc:
        flash(request, exc.message, "error")
        return back("/whitelist")
    stored = store.resource("whitelist")
    paths = set(stored.content.get("paths", [])) if stored else set()
    if action == "remove":
        paths.discard(path)
        flash(request, f"{path} is no longer always reviewed.")
    else:
        paths.add(path)
        flash(request, f"{path} is now always reviewed.")
    store.save_resource("whitelist", {"paths": sorted(paths)}, who=f"op:{user}", note=f"{action} {path}")
    return back("/whitelist")


# -------------------------------------------------------------------- stats
@router.get("/stats", response_class=HTMLResponse)
def stats_page(request: Request, user: Operator):
    service = service_of(request)
    stats = service.store.stats()
    check = audit_check(stats.audited_correct, stats.audited, service.decision.target_precision)
    monitor = served_quality(service)
    return render(request, "stats.html", stats=stats, models=service.store.list_models(),
                  job=service.retrain_job, untrained=service.store.untrained_correction_count(),
                  serving=service.model_version, check=check, monitor=monitor, charts=charts(monitor),
                  cadence=service.retraining.cadence())


@router.post("/retrain")
def retrain(request: Request, user: Operator, csrf_token: Annotated[str, Form()] = ""):
    check_csrf(request, csrf_token)
    try:
        service_of(request).start_retrain(f"op:{user}")
        flash(request, "Retraining started: the candidate is promoted only if it is not worse on held-out products.")
    except Conflict as exc:
        flash(request, str(exc), "error")
    return back("/stats")


@router.get("/products/{product_id}", response_class=HTMLResponse)
def product_page(request: Request, product_id: str, user: Operator):
    service = service_of(request)
    product = service.store.get_product(product_id)
    return render(request, "product.html", product=product, corrections=service.store.corrections(product_id),
                  categories=service.categories())
