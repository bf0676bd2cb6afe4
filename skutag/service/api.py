"""The JSON API under ``/v1`` (Bearer token): tag products, read them, correct them; edit the
taxonomy, label map and brand lexicon; list, promote, roll back and retrain model versions."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from skutag.service.auth import require_token, token_or_session
from skutag.service.categories import CategoryChange, CategoryUpdate, keep_tags, update_category
from skutag.policy.brands import check_brand_entry
from skutag.policy.fields import InvalidInput, normalise_path
from skutag.policy.rules import audit_check
from skutag.service.engine import TaggingService, Upload
from skutag.store.views import Conflict, NotFound
from skutag.taxonomy.aliases import compose

class ErrorBody(BaseModel):
    """Every error the API answers: what is wrong, and the request field it is about (when one is)."""

    detail: str
    field: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description} for status, description in {
        400: "a request that cannot be read", 401: "no API token, or an unknown or revoked one",
        403: "not allowed", 404: "no such product, category, label, brand or model version",
        409: "conflicts with the stored state (e.g. a retraining already running)",
        413: "over a size limit (photo bytes, request bytes, pixels, products per batch)",
        415: "a content type the endpoint does not take", 422: "a field that cannot be used; `field` names it",
        500: "an error of the service itself (logged)", 503: "busy: try again after Retry-After seconds",
    }.items()
}
MAX_OFFSET = 2**31 - 1  # rows skipped by a listing; larger offsets are refused (the database's own limit is 64 bits)

# HTTPBearer documents the scheme in /openapi.json; require_token does the check (401 with a clear message)
router = APIRouter(prefix="/v1", dependencies=[Depends(HTTPBearer(auto_error=False)), Depends(require_token)],
                   responses=ERROR_RESPONSES)
images = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)

Caller = Annotated[str, Depends(require_token)]


def service_of(request: Request) -> TaggingService:
    return request.app.state.service


# ------------------------------------------------------------------ schemas
class TagResponse(BaseModel):
    id: str
    label: str | None
    path: str | None
    confidence: float | None
    decision: str | None
    status: str
    model_version: str | None
    cache_hit: str | None = None
    reasons: list[str] = []
    alternatives: list[dict[str, Any]] = []
    error: str | None = None


class BatchItem(BaseModel):
    """One product of a batch. Fields are checked item by item (a wrong type fails that item alone)."""

    id: Any = Field(None, description="your product id (text or a whole number); generated when absent")
    title: Any = Field(None, description="text")
    price: Any = Field(None, description="a number, or text such as '12.90' or '¥1,299.00'")
    brand: Any = Field(None, description="text")
    image_base64: Any = Field(None, description="the photo's bytes, base64")


class BatchRequest(BaseModel):
    products: list[BatchItem]


class CorrectionRequest(BaseModel):
    category: str = Field(..., description="the right path, levels joined by ' > '", examples=["Fruit > Apple > Pink-Lady"])


class CategoryRequest(BaseModel):
    path: str


class CategoryUpdateRequest(BaseModel):
    path: str = Field(..., description="the category to change (any level), levels joined by ' > '",
                      examples=["Fruit > Banana"])
    name: str | None = Field(None, description="rename it (everything below it follows)")
    parent: str | None = Field(None, description="move it under this category path")
    root: bool = Field(False, description="move it to the top level")
    keywords: list[str] | None = Field(None, description="replace its keywords ([] clears)")
    synonyms: list[str] | None = Field(None, description="replace its synonyms ([] clears)")


class LabelMapEntry(BaseModel):
    path: str


class BrandEntry(BaseModel):
    aliases: list[str] = []
    categories: list[str] = []


def _tag_response(view) -> dict[str, Any]:
    prediction = view.prediction
    return TagResponse(
        id=view.id, label=view.label, path=view.path, confidence=prediction.confidence if prediction else None,
        decision=prediction.decision if prediction else None, status=view.status,
        model_version=prediction.model_version if prediction else None,
        cache_hit=prediction.cache_hit if prediction else None,
        reasons=list(prediction.reasons) if prediction else [],
        alternatives=prediction.outputs.get("alternatives", []) if prediction else [],
        error=prediction.error if prediction else None,
    ).model_dump()


def _text(value: Any, field: str, *, whole_numbers: bool = False) -> str | None:
    """A text field of a batch item (an id may also be a whole number)."""
    if value is None or isinstance(value, str):
        return value
    if whole_numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(field, f"must be text, got {type(value).__name__}")


def _batch_upload(i: int, item: BatchItem) -> Upload:
    data = None
    if item.image_base64 is not None:
        encoded = _text(item.image_base64, f"products[{i}].image_base64")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"products[{i}].image_base64", "is not valid base64") from None
    return Upload(image=data, title=_text(item.title, f"products[{i}].title"), price=item.price,
                  id=_text(item.id, f"products[{i}].id", whole_numbers=True), brand=_text(item.brand, f"products[{i}].brand"))


async def read_upload(upload: UploadFile | None, limit: int) -> bytes | None:
    """The photo part's bytes; None when no file was chosen (a form's empty file input). An empty file that was
    chosen stays b"" and is refused as the CLI refuses an empty photo file."""
    if upload is None:
        return None
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput("image", f"photo is over the {limit}-byte limit", status=413)
    if not data and not upload.filename:
        return None
    return data


# ----------------------------------------------------------------- products
@router.post("/products", response_model=TagResponse, summary="Tag one product (multipart: image, title, price, id)")
async def create_product(
    request: Request,
    image: Annotated[UploadFile | None, File(description="the product photo")] = None,
    title: Annotated[str | None, Form()] = None,
    price: Annotated[str | None, Form(description="a number, e.g. 12.90")] = None,
    id: Annotated[str | None, Form(description="your product id; generated when absent")] = None,
    brand: Annotated[str | None, Form()] = None,
):
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise InvalidInput("body", f"send the product as multipart/form-data (image, title, price, id, brand), not "
                                   f"{kind}; several as JSON: POST /v1/products:batch", status=415)
    service = service_of(request)
    data = await read_upload(image, service.settings.max_upload_bytes)
    upload = Upload(image=data, title=title, price=price, id=id, brand=brand)
    view = await run_in_threadpool(service.tag, upload)
    return _tag_response(view)


@router.post("/products:batch", summary="Tag several products (JSON, photos base64); bad items get their own error")
async def create_products_batch(request: Request, body: BatchRequest):
    service = service_of(request)
    if not body.products:
        raise InvalidInput("products", "send at least one product")
    if len(body.products) > service.settings.max_batch:
        raise InvalidInput("products", f"{len(body.products)} products; at most {service.settings.max_batch} "
                                       f"per batch", status=413)
    uploads: list[Upload | InvalidInput] = []
    first_of: dict[str, int] = {}
    for i, item in enumerate(body.products):
        try:
            upload = _batch_upload(i, item)
            try:
                upload = service.validate(upload)  # the product field rules, each error named by its item
            except InvalidInput as error:
                raise InvalidInput(f"products[{i}].{error.field}", error.message, error.status) from None
            product_id = upload.id.strip() if upload.id else None
            if product_id and product_id in first_of:
                raise InvalidInput(f"products[{i}].id", f"repeats the id of products[{first_of[product_id]}]")
            if product_id:
                first_of[product_id] = i
            uploads.append(upload)
        except InvalidInput as error:
            uploads.append(error)
    good = [u for u in uploads if isinstance(u, Upload)]
    outcomes = iter(await run_in_threadpool(service.tag_many, good) if good else [])
    results = []
    for item in uploads:
        if isinstance(item, InvalidInput):
            results.append({"error": {"field": item.field, "message": item.message}})
            continue
        outcome = next(outcomes)
        results.append({"error": {"field": outcome.error.field, "message": outcome.error.message}}
                       if outcome.error else _tag_response(outcome.product))
    return {"results": results, "n": len(results), "errors": sum(1 for r in results if isinstance(r.get("error"), dict))}


@router.get("/products/{product_id}", summary="A product with its latest prediction and its correction history")
def get_product(request: Request, product_id: str):
    store = service_of(request).store
    view = store.get_product(product_id)
    return {**view.to_json(), "corrections": [c.to_json() for c in store.corrections(product_id)]}


@router.get("/products", summary="List products, optionally by status (auto, review, manual, accepted, corrected, error)")
def list_products(request: Request, status: Annotated[list[str] | None, Query()] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50,
                  offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0):
    store = service_of(request).store
    allowed = {"auto", "review", "manual", "accepted", "corrected", "error"}
    bad = [s for s in status or [] if s not in allowed]
    if bad:
        raise InvalidInput("status", f"unknown status {bad[0]!r}; one of {', '.join(sorted(allowed))}")
    return {"products": [v.to_json() for v in store.list_products(status, limit=limit, offset=offset, order="newest")],
            "total": store.count_products(status)}


@router.post("/products/{product_id}/corrections", status_code=201, summary="Set the right category of a product")
def correct_product(request: Request, product_id: str, body: CorrectionRequest, caller: Caller):
    service = service_of(request)
    service.store.get_product(product_id)  # 404 before validating the category
    return service.correct(product_id, body.category, who=caller).to_json()


@router.post("/products/{product_id}/accept", status_code=201, summary="Confirm the suggested category")
def accept_product(request: Request, product_id: str, caller: Caller):
    return service_of(request).correct(product_id, None, who=caller, kind="accept").to_json()


@images.get("/products/{product_id}/image", summary="The product's photo (token or dashboard session)")
def product_image(request: Request, product_id: str, _: Annotated[str, Depends(token_or_session)]):
    store = service_of(request).store
    data, content_type = store.image_bytes(store.product_image_id(product_id))
    return Response(data, media_type=content_type, headers={"Cache-Control": "private, max-age=3600"})


# ---------------------------------------------------------------- resources
def _edit(request: Request, kind: str, caller: str, change, note: str) -> dict[str, Any]:
    store = service_of(request).store
    current = store.resource(kind)
    content = change(_copy(current.content) if current else _empty(kind))
    return store.save_resource(kind, content, who=caller, note=note).to_json()


def _copy(content: Any) -> Any:
    import copy

    return copy.deepcopy(content)


def _empty(kind: str) -> Any:
    return {"paths": []} if kind in ("taxonomy", "whitelist") else {}


@router.get("/taxonomy", summary="The category paths (stored taxonomy, else the model's categories)")
def get_taxonomy(request: Request):
    service = service_of(request)
    stored = service.store.resource("taxonomy")
    return {"version": stored.version if stored else 0, "paths": service.categories(),
            "tags": stored.content.get("tags", {}) if stored else {}}


@router.get("/taxonomy/versions")
def taxonomy_versions(request: Request, kind: Annotated[str, Query(pattern="^(taxonomy|label_map|lexicon|whitelist)$")] = "taxonomy"):
    return {"versions": [v.to_json() for v in service_of(request).store.resource_history(kind)]}


@router.post("/taxonomy/categories", status_code=201, summary="Add a category path (and its parents)")
def add_category(request: Request, body: CategoryRequest, caller: Caller):
    path = normalise_path(body.path)
    service = service_of(request)
    seed = service.categories()

    def change(content):
        paths = set(content.get("paths") or seed)
        levels = path.split(" > ")
        paths.add(path)
        paths.difference_update(" > ".join(levels[:i]) for i in range(1, len(levels)))  # keep leaves only
        return keep_tags(content, paths)

    return _edit(request, "taxonomy", caller, change, f"add {path}")


@router.delete("/taxonomy/categories", summary="Remove a category path (leaf) from the taxonomy")
def remove_category(request: Request, path: Annotated[str, Query()], caller: Caller):
    path = normalise_path(path)
    service = service_of(request)
    paths = set(service.categories())
    if path not in paths:
        below = sorted(p for p in paths if p.startswith(path + " > "))
        if below:
            raise Conflict(f"category {path!r} is not a leaf: remove the {len(below)} categories under it first "
                           f"(e.g. {below[0]!r}), or rename/move it with PUT /v1/taxonomy/categories")
        raise NotFound(f"category {path!r} is not in the taxonomy")
    return _edit(request, "taxonomy", caller, lambda c: keep_tags(c, paths - {path}), f"remove {path}")


@router.put("/taxonomy/categories", summary="Rename, move or re-tag a category (like `skutag taxonomy update`)")
def update_category_route(request: Request, body: CategoryUpdateRequest, caller: Caller):
    """Everything below the category follows it; label-map targets and whitelisted prefixes on a changed
    path are rewritten (new versions of those resources). 404 unknown category, 409 a cycle or a path that
    already exists, 422 a bad name or parent."""
    service = service_of(request)
    change = CategoryChange(name=body.name, parent=body.parent, root=body.root,
                            keywords=tuple(body.keywords) if body.keywords is not None else None,
                            synonyms=tuple(body.synonyms) if body.synonyms is not None else None)
    seed = service.categories()
    done: list[CategoryUpdate] = []

    def change_taxonomy(content):
        done.append(update_category(content, seed, body.path, change))
        return done[-1].content

    saved = _edit(request, "taxonomy", caller, change_taxonomy, f"update {normalise_path(body.path)}")
    update = done[-1]
    if update.renamed:
        _follow_renames(request, caller, update)
    return {**saved, "category": update.to_json()}


def _follow_renames(request: Request, caller: str, update: CategoryUpdate) -> None:
    """Label-map targets, whitelisted prefixes, brands' categories and stored products on a renamed or moved
    path move with it; the path aliases (what the served model's old answers now mean) take the edit in."""
    store = service_of(request).store
    note = f"follow taxonomy update {update.old_path} -> {update.path}"
    aliases = store.resource("path_aliases")
    store.save_resource("path_aliases", compose(aliases.content if aliases else {}, update.renamed),
                        who=caller, note=note)
    store.rename_paths(update.renamed)
    brands = service_of(request).lexicon_entries()
    if any(update.follow(c) != c for entry in brands.values() for c in entry.get("categories", ())):
        _edit_lexicon(request, caller, lambda content: {
            name: {**entry, "categories": [update.follow(c) for c in entry.get("categories", ())]}
            for name, entry in content.items()}, note)
    label_map = store.resource("label_map")
    if label_map and any(update.follow(p) != p for p in label_map.content.values()):
        store.save_resource("label_map", {k: update.follow(p) for k, p in label_map.content.items()}, who=caller,
                            note=note)
    whitelist = store.resource("whitelist")
    paths = whitelist.content.get("paths", []) if whitelist else []
    if any(update.follow(p) != p for p in paths):
        store.save_resource("whitelist", {**whitelist.content, "paths": sorted({update.follow(p) for p in paths})},
                            who=caller, note=note)


@router.get("/label-map", summary="Service-level label -> category overrides")
def get_label_map(request: Request):
    stored = service_of(request).store.resource("label_map")
    return {"version": stored.version if stored else 0, "labels": stored.content if stored else {}}


@router.put("/label-map/{label}", summary="Map a model label to a category path")
def put_label(request: Request, label: str, body: LabelMapEntry, caller: Caller):
    if not label.strip() or len(label) > 200:
        raise InvalidInput("label", "a label needs 1-200 characters")
    service = service_of(request)
    path = service.check_category(body.path)
    return _edit(request, "label_map", caller, lambda c: {**c, label: path}, f"map {label} -> {path}")


@router.delete("/label-map/{label}")
def delete_label(request: Request, label: str, caller: Caller):
    stored = service_of(request).store.resource("label_map")
    if not stored or label not in stored.content:
        raise NotFound(f"label {label!r} is not in the label map")
    return _edit(request, "label_map", caller, lambda c: {k: v for k, v in c.items() if k != label}, f"unmap {label}")


@router.get("/brands", summary="The brand lexicon (the edited one, else the model's own)")
def get_brands(request: Request):
    service = service_of(request)
    stored = service.store.resource("lexicon")
    return {"version": stored.version if stored else 0, "brands": service.lexicon_entries()}


def _edit_lexicon(request: Request, caller: str, change, note: str) -> dict[str, Any]:
    """Apply ``change`` to the lexicon in force; a lexicon that would not load is refused before it is saved."""
    from skutag.policy.rules import lexicon_from_entries
    from skutag.taxonomy.brands import LexiconError

    service = service_of(request)
    content = change(_copy(service.lexicon_entries()))
    try:
        lexicon_from_entries(content)
    except LexiconError as exc:
        raise InvalidInput("aliases", str(exc)) from None
    saved = service.store.save_resource("lexicon", content, who=caller, note=note).to_json()
    service.apply_lexicon()
    return saved


@router.put("/brands/{name}", summary="Add or replace a brand with its aliases and categories")
def put_brand(request: Request, name: str, body: BrandEntry, caller: Caller):
    service = service_of(request)
    name, aliases, categories = check_brand_entry(name, body.aliases, body.categories, service.check_category)
    return _edit_lexicon(request, caller, lambda c: {**c, name: {"aliases": aliases, "categories": categories}},
                         f"set brand {name}")


@router.delete("/brands/{name}")
def delete_brand(request: Request, name: str, caller: Caller):
    if name not in service_of(request).lexicon_entries():
        raise NotFound(f"brand {name!r} is not in the lexicon")
    return _edit_lexicon(request, caller, lambda c: {k: v for k, v in c.items() if k != name}, f"remove brand {name}")


# ------------------------------------------------------------------- models
@router.get("/models", summary="Model versions, newest first")
def list_models(request: Request):
    service = service_of(request)
    return {"active": service.model_version, "models": [m.to_json() for m in service.store.list_models()],
            "retrain": service.retrain_job.to_json()}


@router.post("/models/{version}/promote", summary="Serve this model version")
def promote_model(request: Request, version: str):
    service = service_of(request)
    service.promote(version)
    return {"active": service.model_version}


@router.post("/models:rollback", summary="Serve the previously promoted version again")
def rollback_model(request: Request):
    service = service_of(request)
    return {"active": service.rollback()}


@router.post("/models:retrain", status_code=202, summary="Train a candidate from corrections; promoted only if not worse")
def retrain_model(request: Request, caller: Caller, wait: bool = False):
    service = service_of(request)
    job = service.retrain_now(caller) if wait else service.start_retrain(caller)
    return job.to_json()


@router.get("/models:retrain", summary="State of the last retraining")
def retrain_state(request: Request):
    return service_of(request).retrain_job.to_json()


@router.get("/stats", summary="Auto rate, audited precision, corrections per day, current model; the quality "
                              "monitor's numbers (per day, per category with 95% intervals, model versions, "
                              "confidence drift against the training rows) and the retraining cadence and schedule")
def stats(request: Request):
    service = service_of(request)
    stats = service.store.stats()
    from skutag.service.monitor import served_quality

    return {**stats.to_json(), "serving": service.model_version,
            "precision_check": audit_check(stats.audited_correct, stats.audited, service.decision.target_precision),
            "quality": served_quality(service), "retrain_cadence": service.retraining.cadence()}


