"""The listing schema family: what clients send to create and update, and what they get back.

Shape limits come from ``services.listings`` so the OpenAPI document and the
service's own checks cannot drift apart; the price range is a setting, so only
the service checks it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from .money import Sats
from ...services.listings import (CATEGORIES, DESCRIPTION_MAX_CHARS, ESCROW_MODES, ID_MAX, PAGE_MAX,
                                  QUERY_MAX_CHARS, SATS_MAX, STOCK_MAX, TITLE_MAX_CHARS, TITLE_MIN_CHARS, Sort)

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=TITLE_MIN_CHARS,
                                         max_length=TITLE_MAX_CHARS)]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX_CHARS)]
Category = Literal[CATEGORIES]  # type: ignore[valid-type]
EscrowMode = Literal[ESCROW_MODES]  # type: ignore[valid-type]
Stock = Annotated[int, Field(ge=0, le=STOCK_MAX)]


class ListingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    category: Category
    price_sats: Sats = Field(description="whole satoshis, within the marketplace's min_price_sats..max_price_sats")
    stock: Stock
    escrow_mode: EscrowMode = "ln_hold"


class ListingUpdate(BaseModel):
    """Only the fields sent change; none of them may be null."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    category: Category | None = None
    price_sats: Sats | None = None
    stock: Stock | None = None
    escrow_mode: EscrowMode | None = None

    # Validators skip defaults, so this rejects only an explicit null.
    @field_validator("*")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class ListingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    seller_id: int
    title: str
    description: str
    category: str
    price_sats: int
    stock: int
    escrow_mode: str
    created_at: datetime  # aware: store.models.UtcDateTime
    updated_at: datetime


class ListingPage(BaseModel):
    items: list[ListingOut]
    total: int = Field(description="listings matching the filters, over all pages")
    limit: int
    offset: int


class ListingSearch(BaseModel):
    """The search's query parameters, validated as one model: field by field, FastAPI's own
    checks of ten parameters cost more per request than the search itself."""

    q: str | None = Field(None, max_length=QUERY_MAX_CHARS,
                          description="words that must all appear in the title or description")
    category: Category | None = None
    min_price: int | None = Field(None, ge=0, le=SATS_MAX, description="in sats, inclusive")
    max_price: int | None = Field(None, ge=0, le=SATS_MAX, description="in sats, inclusive")
    seller_id: int | None = Field(None, ge=1, le=ID_MAX)
    limit: int = Field(20, ge=1, le=PAGE_MAX)
    offset: int = Field(0, ge=0, le=SATS_MAX)
    sort: Sort = "relevance"
    min_seller_rating: float | None = Field(None, ge=1, le=5, description="the seller's average rating, 1-5")

