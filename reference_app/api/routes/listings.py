"""Listings over HTTP: browsing is public, selling needs the seller role,
changing a listing needs to be allowed by ``services.listings.authorize``."""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.orm import Session

from ...context import AppContext
from ...services import listings
from ...services.accounts import Principal
from ...store.models import Listing
from ..routing import Route, answer, database_only
from ..deps import current_principal, get_ctx, get_session, DbSession, require_role, signs_in
from ..params import Id, QueryModel
from ..schemas.listings import ListingCreate, ListingOut, ListingPage, ListingSearch, ListingUpdate

router = APIRouter(route_class=Route, prefix="/listings", tags=["listings"])


def authorized_listing(action: str) -> Callable[..., Listing]:
    """Load the listing in the path and check, once, that the user may do ``action`` to it."""
    @signs_in
    async def dep(listing_id: Id, request: Request) -> Listing:  # as deps.authorized_order
        user = await current_principal(request)
        listing = listings.get(await get_session(request), listing_id)
        listings.authorize(user, listing, action)
        return listing
    return dep


SEARCH = QueryModel(ListingSearch)


@router.get("", response_model=ListingPage, openapi_extra=SEARCH.openapi)
async def search_listings(params: ListingSearch = Depends(SEARCH), session: Session = DbSession) -> Response:
    items, total = await listings.search_async(session, **params.model_dump())
    return answer(ListingPage, {"items": items, "total": total, "limit": params.limit, "offset": params.offset})


@router.get("/{listing_id}", response_model=ListingOut)
async def read_listing(listing_id: Id, session: Session = DbSession) -> Response:
    return answer(ListingOut, await listings.read(session, listing_id))


@router.post("", response_model=ListingOut, status_code=status.HTTP_201_CREATED)
async def create_listing(body: ListingCreate, seller: Principal = Depends(require_role("seller")),
                         ctx: AppContext = Depends(get_ctx), session: Session = DbSession) -> Response:
    return answer(ListingOut, await listings.create(session, ctx.settings, seller, **body.model_dump()),
                  status.HTTP_201_CREATED)


@router.patch("/{listing_id}", response_model=ListingOut)
@database_only
def update_listing(body: ListingUpdate, listing: Listing = Depends(authorized_listing("update")),
                   ctx: AppContext = Depends(get_ctx), session: Session = DbSession) -> Listing:
    return listings.update(session, ctx.settings, listing, body.model_dump(exclude_unset=True))


@router.delete("/{listing_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
@database_only
def delete_listing(listing: Listing = Depends(authorized_listing("delete")),
                   session: Session = DbSession) -> None:
    listings.delete(session, listing)
