"""Money fields are strict integers: "5000" and 5000.0 are refused with 422, on every money
field of every request body (they were accepted as 5000)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, create_model

from reference_app.api.schemas import accounts, listings, market, onchain, orders, wallet
from reference_app.main import create_app

SCHEMA_MODULES = (accounts, listings, market, onchain, orders, wallet)


def request_models(app) -> set[type[BaseModel]]:
    """The model of every JSON request body in the OpenAPI document, found in the schema modules."""
    names = set()
    for ops in app.openapi()["paths"].values():
        for op in ops.values():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            if ref:
                names.add(ref.rsplit("/", 1)[1])
    found = {}
    for module in SCHEMA_MODULES:
        for name, obj in vars(module).items():
            if name in names and isinstance(obj, type) and issubclass(obj, BaseModel):
                found[name] = obj
    assert set(found) == names, f"request bodies defined outside the schema modules: {names - set(found)}"
    return set(found.values())


def money_fields(settings) -> list[tuple[type[BaseModel], str]]:
    app = create_app(settings, with_node=False)
    try:
        return sorted(((m, name) for m in request_models(app) for name in m.model_fields if name.endswith("_sats")),
                      key=lambda mf: (mf[0].__name__, mf[1]))
    finally:
        app.state.ctx.db.dispose()


def test_request_bodies_have_money_fields_to_check(settings):
    names = {f"{m.__name__}.{f}" for m, f in money_fields(settings)}
    assert {"ListingCreate.price_sats", "ListingUpdate.price_sats", "BidIn.amount_sats",
            "LnDepositIn.amount_sats", "OnchainWithdrawalIn.amount_sats"} <= names


@pytest.mark.parametrize("sent", ["5000", 5000.0, True], ids=["string", "float", "bool"])
def test_every_money_field_refuses_anything_but_an_integer(settings, sent):
    for model, name in money_fields(settings):
        info = model.model_fields[name]
        one = create_model(f"{model.__name__}_{name}", value=(info.annotation, info))
        assert one(value=5000).value == 5000
        with pytest.raises(ValidationError, match="valid integer"):
            one(value=sent)


def seller(api):
    api.post("/auth/register", json={"email": "s@example.com", "password": "seller-password-1",
                                     "display_name": "s", "roles": ["seller"]})
    tokens = api.post("/auth/login", json={"email": "s@example.com", "password": "seller-password-1"}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.mark.parametrize("price", ["5000", 5000.0], ids=["string", "float"])
def test_listing_price_as_string_or_float_is_422_naming_the_field(api, price):
    auth = seller(api)
    body = {"title": "a fine thing", "category": "other", "price_sats": price, "stock": 1}
    r = api.post("/listings", json=body, headers=auth)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_failed" and r.json()["field"] == "price_sats"
    assert "valid integer" in r.json()["detail"]
    assert api.post("/listings", json={**body, "price_sats": 5000}, headers=auth).status_code == 201
