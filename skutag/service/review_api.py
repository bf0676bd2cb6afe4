"""The review queue under ``/v1/review`` (Bearer token): the queue in informative or arrival order with its
near-duplicate clusters, one verdict for a whole cluster, and the undo of such a group verdict. The order and the
clusters are ``skutag.service.review_queue``'s; the group verdicts are ``Store.apply_group`` / ``undo_group``."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from skutag.policy.fields import InvalidInput
from skutag.service import review_queue
from skutag.service.api import ERROR_RESPONSES, MAX_OFFSET, service_of
from skutag.service.auth import require_token
from skutag.store.views import NotFound

router = APIRouter(prefix="/v1", dependencies=[Depends(HTTPBearer(auto_error=False)), Depends(require_token)],
                   responses=ERROR_RESPONSES, tags=["review"])
Caller = Annotated[str, Depends(require_token)]


class ReviewOrder(str, Enum):
    informative = "informative"
    arrival = "arrival"


class ReviewItem(BaseModel):
    id: str
    rank: int = Field(..., description="place in the whole queue (0 first)")
    title: str | None
    path: str | None = Field(..., description="the suggested category")
    confidence: float | None
    uncertainty: float = Field(..., description="1 - margin of the top two answers (or normalised entropy); 1 "
                                                "without an answer")
    score: float = Field(..., description="uncertainty x cluster size: the expected value of a human answer")
    pick: str = Field(..., description="informative, random (the unbiased share) or arrival")
    cluster_id: str
    cluster_size: int


class ReviewCluster(BaseModel):
    id: str
    size: int
    products: list[str]


class ReviewListing(BaseModel):
    order: ReviewOrder
    total: int
    items: list[ReviewItem]
    clusters: list[ReviewCluster] = Field(..., description="the near-duplicate groups (2 or more products) of the "
                                                           "whole queue, in queue order")


class ClusterVerdict(BaseModel):
    category: str | None = Field(None, description="the right path for every product of the cluster; absent: "
                                                   "each product's own suggestion is accepted")


class ActionProduct(BaseModel):
    product_id: str
    correction_id: int
    new_path: str | None = None


class GroupActionResponse(BaseModel):
    action_id: int
    action: str
    cluster_id: str | None = None
    kind: str | None = None
    category: str | None = None
    undone: bool = False
    undo_of: int | None = None
    products: list[ActionProduct | str] = []
    who: str
    created_at: str | None = None


def _item(ranked: review_queue.Ranked, pending) -> ReviewItem:
    p = pending[ranked.id]
    return ReviewItem(id=ranked.id, rank=ranked.rank, title=p.title, path=p.path, confidence=p.confidence,
                      uncertainty=ranked.uncertainty, score=ranked.score, pick=ranked.pick,
                      cluster_id=ranked.cluster_id, cluster_size=ranked.cluster_size)


@router.get("/review", response_model=ReviewListing,
            summary="The review queue: informative order (uncertainty x cluster size x the photos' typicality and "
                    "novelty, with a random share) or arrival")
def review_listing(request: Request, order: Annotated[ReviewOrder | None, Query(
                       description="informative (default: service.review_order) or arrival (oldest first)")] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0):
    """The same queue gives the same order: ties break on the product id and the random share is drawn by a hash
    of the id."""
    service = service_of(request)
    queue = review_queue.queue(service.store, service.settings, order.value if order else None)
    page = queue.ranked[offset:offset + limit]
    return ReviewListing(order=ReviewOrder(queue.how), total=len(queue.ranked),
                         items=[_item(r, queue.pending) for r in page],
                         clusters=[ReviewCluster(**c.to_json()) for c in queue.clusters(min_size=2)])


ClusterId = Annotated[str, Path(description="a cluster id from GET /v1/review", max_length=64)]
ActionId = Annotated[int, Path(ge=1, le=MAX_OFFSET)]


@router.post("/review/clusters/{cluster_id}:apply", status_code=201, response_model=GroupActionResponse,
             summary="One verdict for every product of a near-duplicate cluster (one correction each)")
async def apply_cluster(request: Request, cluster_id: ClusterId, body: ClusterVerdict, caller: Caller):
    """404 for a cluster that is not in the queue (any more: its members changed), 409 when a product was judged
    meanwhile or has no suggestion to accept, 422 for an unknown category."""
    service = service_of(request)
    action = await run_in_threadpool(apply_verdict, service, cluster_id, body.category, caller)
    return action.to_json()


@router.post("/review/actions/{action_id}:undo", response_model=GroupActionResponse,
             summary="Undo a cluster verdict: its corrections go, the products are back in the queue")
def undo_action(request: Request, action_id: ActionId, caller: Caller):
    """409 when it was undone already, a product was judged again since, or a model was trained with it."""
    return service_of(request).store.undo_group(action_id, caller).to_json()


@router.get("/review/actions/{action_id}", response_model=GroupActionResponse, summary="A cluster verdict")
def get_action(request: Request, action_id: ActionId):
    return service_of(request).store.group_action(action_id).to_json()


def apply_verdict(service, cluster_id: str, category: str | None, who: str):
    """A cluster's verdict through the service's rules (the category must exist); the cadence may then retrain."""
    if category is not None and not category.strip():
        raise InvalidInput("category", "give the right category path, or leave it out to accept the suggestions")
    path = service.check_category(category) if category is not None else None
    members = review_queue.queue(service.store, service.settings, "arrival").members(cluster_id)  # same clusters
    if not members:
        raise NotFound(f"no cluster {cluster_id!r} in the review queue (reload it: clusters change as products "
                       f"come and go)")
    action = service.store.apply_group(members, path, who, kind="correct" if path else "accept",
                                       cluster_id=cluster_id)
    service.retraining.after_verdicts()
    return action
