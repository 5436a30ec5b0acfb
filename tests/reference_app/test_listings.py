"""Listings over HTTP: create, read, update, delete, and search.

On PostgreSQL every test shares one database, so no test assumes an empty
listings table: each makes its own seller and its own made-up words, and
filters by them.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from reference_app.services import tokens
from reference_app.store.models import User


def make_user(api: TestClient, *roles: str) -> tuple[int, dict[str, str]]:
    """A user with ``roles`` and the headers that authenticate as them (until accounts can register)."""
    ctx = api.app.state.ctx
    with ctx.db.session() as s:
        user = User(email=f"{uuid.uuid4().hex}@example.com", display_name="tester", password_hash="unused",
                    roles=",".join(roles) or "buyer")
        s.add(user)
        s.flush()
        token = tokens.issue(ctx.settings.secret_key, user.id, "access", 900, user.token_version)
        return user.id, {"Authorization": f"Bearer {token}"}


def word() -> str:
    """A made-up word no other test uses: letters only, so both backends index it as one word."""
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:12])


def listing_body(**over: object) -> dict:
    body = {"title": "Vintage film camera", "description": "Works, with a leather case.",
            "category": "electronics", "price_sats": 50_000, "stock": 3}
    body.update(over)
    return body


def create(api: TestClient, headers: dict[str, str], **over: object) -> dict:
    r = api.post("/listings", json=listing_body(**over), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def search(api: TestClient, **params: object) -> dict:
    r = api.get("/listings", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def assert_problem(r, status: int, code: str, detail: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert (body["code"], body["detail"]) == (code, detail)
    if field is not None:
        assert body["field"] == field


@pytest.fixture
def seller(api: TestClient) -> tuple[int, dict[str, str]]:
    return make_user(api, "buyer", "seller")


# create

def test_create_returns_listing(api, seller):
    seller_id, headers = seller
    listing = create(api, headers, title="  Vintage film camera  ")
    assert listing["seller_id"] == seller_id
    assert listing["title"] == "Vintage film camera"
    assert (listing["category"], listing["price_sats"], listing["stock"]) == ("electronics", 50_000, 3)
    assert listing["escrow_mode"] == "ln_hold"


def test_create_non_seller_forbidden(api):
    _, headers = make_user(api, "buyer")
    r = api.post("/listings", json=listing_body(), headers=headers)
    assert_problem(r, 403, "permission_denied", "this needs the seller role")


def test_create_anonymous_not_authenticated(api):
    r = api.post("/listings", json=listing_body())
    assert_problem(r, 401, "not_authenticated", "log in first: send 'Authorization: Bearer <access token>'")


@pytest.mark.parametrize("price", [999, 10_000_001, 0, -5])
def test_create_bad_price_names_price_sats(api, seller, price):
    seller_id, headers = seller
    r = api.post("/listings", json=listing_body(price_sats=price), headers=headers)
    assert_problem(r, 422, "validation_failed", "price_sats must be between 1000 and 10000000", "price_sats")
    assert search(api, seller_id=seller_id)["total"] == 0


@pytest.mark.parametrize(("over", "field", "detail"), [
    ({"title": " ab "}, "title", "title: String should have at least 3 characters"),
    ({"category": "weapons"}, "category",
     "category: Input should be 'electronics', 'books', 'clothing', 'home', 'collectibles' or 'other'"),
    ({"stock": -1}, "stock", "stock: Input should be greater than or equal to 0"),
    ({"seller_id": 1}, "seller_id", "seller_id: Extra inputs are not permitted"),
])
def test_create_bad_field_names_it(api, seller, over, field, detail):
    seller_id, headers = seller
    r = api.post("/listings", json=listing_body(**over), headers=headers)
    assert_problem(r, 422, "validation_failed", detail, field)
    assert search(api, seller_id=seller_id)["total"] == 0


def test_create_unknown_escrow_mode_rejected(api, seller):
    _, headers = seller
    r = api.post("/listings", json=listing_body(escrow_mode="carrier_pigeon"), headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "escrow_mode"
    assert "'ln_hold', 'onchain_multisig' or 'custodial'" in r.json()["detail"]


@pytest.mark.parametrize("mode", ["onchain_multisig", "custodial"])
def test_create_listing_in_each_escrow_mode(api, seller, mode):
    _, headers = seller
    r = api.post("/listings", json=listing_body(escrow_mode=mode), headers=headers)
    assert r.status_code == 201 and r.json()["escrow_mode"] == mode


# read

def test_read_returns_listing(api, seller):
    _, headers = seller
    listing = create(api, headers)
    r = api.get(f"/listings/{listing['id']}")
    assert r.status_code == 200
    assert r.json() == listing


@pytest.mark.parametrize("listing_id", [2_000_000_000, 2**40])
def test_read_unknown_id_not_found(api, listing_id):
    r = api.get(f"/listings/{listing_id}")
    assert_problem(r, 404, "not_found", f"listing {listing_id} does not exist")


# update

def test_update_changes_only_sent_fields(api, seller):
    _, headers = seller
    listing = create(api, headers)
    r = api.patch(f"/listings/{listing['id']}", json={"price_sats": 42_000, "stock": 0}, headers=headers)
    assert r.status_code == 200, r.text
    updated = r.json()
    assert (updated["price_sats"], updated["stock"]) == (42_000, 0)
    assert updated["title"] == listing["title"] and updated["description"] == listing["description"]
    assert api.get(f"/listings/{listing['id']}").json() == updated


@pytest.mark.parametrize("roles", [("seller",), ("admin",)])
def test_update_non_owner_forbidden(api, seller, roles):
    _, headers = seller
    listing = create(api, headers)
    _, other = make_user(api, *roles)
    r = api.patch(f"/listings/{listing['id']}", json={"price_sats": 2_000}, headers=other)
    assert_problem(r, 403, "permission_denied", f"update on listing {listing['id']} needs to be its owner")
    assert api.get(f"/listings/{listing['id']}").json()["price_sats"] == 50_000


def test_update_bad_price_changes_nothing(api, seller):
    _, headers = seller
    listing = create(api, headers)
    r = api.patch(f"/listings/{listing['id']}", json={"title": "Another title", "price_sats": 1},
                  headers=headers)
    assert_problem(r, 422, "validation_failed", "price_sats must be between 1000 and 10000000", "price_sats")
    assert api.get(f"/listings/{listing['id']}").json() == listing


def test_update_null_field_rejected(api, seller):
    _, headers = seller
    listing = create(api, headers)
    r = api.patch(f"/listings/{listing['id']}", json={"title": None}, headers=headers)
    assert_problem(r, 422, "validation_failed", "title: Value error, may be left out but not null", "title")


def test_update_unknown_id_not_found(api, seller):
    _, headers = seller
    r = api.patch("/listings/2000000000", json={"stock": 1}, headers=headers)
    assert_problem(r, 404, "not_found", "listing 2000000000 does not exist")


# delete

def test_delete_owner_removes_listing(api, seller):
    _, headers = seller
    listing = create(api, headers)
    r = api.delete(f"/listings/{listing['id']}", headers=headers)
    assert r.status_code == 204 and r.content == b""
    assert_problem(api.get(f"/listings/{listing['id']}"), 404, "not_found",
                   f"listing {listing['id']} does not exist")
    assert_problem(api.delete(f"/listings/{listing['id']}", headers=headers), 404, "not_found",
                   f"listing {listing['id']} does not exist")


def test_delete_admin_allowed(api, seller):
    _, headers = seller
    listing = create(api, headers)
    _, admin = make_user(api, "admin")
    assert api.delete(f"/listings/{listing['id']}", headers=admin).status_code == 204
    assert api.get(f"/listings/{listing['id']}").status_code == 404


def test_delete_non_owner_forbidden(api, seller):
    _, headers = seller
    listing = create(api, headers)
    _, other = make_user(api, "seller")
    r = api.delete(f"/listings/{listing['id']}", headers=other)
    assert_problem(r, 403, "permission_denied", f"delete on listing {listing['id']} needs to be its admin or owner")
    assert api.get(f"/listings/{listing['id']}").status_code == 200


# search

def test_search_words_ranks_title_matches_first(api, seller):
    _, headers = seller
    w = word()
    in_description = create(api, headers, title="Plain mug", description=f"A {w} mug, barely used.")
    in_title = create(api, headers, title=f"{w} lamp", description="Brass, 1970s.")
    create(api, headers, title="Unrelated item", description="Nothing to see.")

    found = search(api, q=w)
    assert found["total"] == 2
    assert [i["id"] for i in found["items"]] == [in_title["id"], in_description["id"]]


def test_search_words_must_all_match(api, seller):
    _, headers = seller
    w, other = word(), word()
    both = create(api, headers, title=f"{w} chair", description=f"Oak, {other}.")
    create(api, headers, title=f"{w} table")
    assert [i["id"] for i in search(api, q=f"{other} {w}")["items"]] == [both["id"]]


def test_search_matches_word_forms(api, seller):
    seller_id, headers = seller
    listing = create(api, headers, title="Two vintage cameras", description="With their manuals.")
    found = search(api, q="camera manual", seller_id=seller_id)
    assert [i["id"] for i in found["items"]] == [listing["id"]]


def test_search_finds_updated_words_only(api, seller):
    _, headers = seller
    old, new = word(), word()
    listing = create(api, headers, title=f"{old} radio")
    api.patch(f"/listings/{listing['id']}", json={"title": f"{new} radio"}, headers=headers)
    assert search(api, q=old)["total"] == 0
    assert [i["id"] for i in search(api, q=new)["items"]] == [listing["id"]]


def test_search_filters_category_price_and_seller(api, seller):
    seller_id, headers = seller
    _, other_headers = make_user(api, "seller")
    book = create(api, headers, category="books", price_sats=5_000)
    cheap = create(api, headers, category="electronics", price_sats=2_000)
    dear = create(api, headers, category="electronics", price_sats=900_000)
    create(api, other_headers, category="books", price_sats=5_000)

    def ids(**params):
        return sorted(i["id"] for i in search(api, seller_id=seller_id, **params)["items"])

    assert ids() == sorted([book["id"], cheap["id"], dear["id"]])
    assert ids(category="books") == [book["id"]]
    assert ids(min_price=2_000, max_price=5_000) == sorted([book["id"], cheap["id"]])
    assert ids(category="electronics", min_price=100_000) == [dear["id"]]


def test_search_paginates_with_total(api, seller):
    seller_id, headers = seller
    made = [create(api, headers, price_sats=1_000 * (i + 1))["id"] for i in range(5)]
    pages = [search(api, seller_id=seller_id, limit=2, offset=offset, sort="price_asc") for offset in (0, 2, 4, 6)]
    assert [p["total"] for p in pages] == [5, 5, 5, 5]
    assert [[i["id"] for i in p["items"]] for p in pages] == [made[0:2], made[2:4], made[4:], []]
    assert (pages[1]["limit"], pages[1]["offset"]) == (2, 2)


def test_search_sorts_by_price_and_newest(api, seller):
    seller_id, headers = seller
    mid = create(api, headers, price_sats=20_000)["id"]
    low = create(api, headers, price_sats=10_000)["id"]
    high = create(api, headers, price_sats=30_000)["id"]

    def order(sort):
        return [i["id"] for i in search(api, seller_id=seller_id, sort=sort)["items"]]

    assert order("price_asc") == [low, mid, high]
    assert order("price_desc") == [high, mid, low]
    assert order("newest") == [high, low, mid]
    assert order("relevance") == [high, low, mid]  # without q, relevance means newest


@pytest.mark.parametrize("hostile", ['"{w}', "{w} (", "({w}", "{w}*", "^{w}", "-{w}", "{w}:", "+{w})",
                                     '"{w}""', "{w} \\ % _ ' ; --"])
def test_search_hostile_syntax_around_word_finds_it(api, seller, hostile):
    _, headers = seller
    w = word()
    listing = create(api, headers, title=f"{w} teapot")
    found = search(api, q=hostile.format(w=w))
    assert [i["id"] for i in found["items"]] == [listing["id"]]


@pytest.mark.parametrize("hostile", ['"foo AND (', "NEAR(foo bar", "title:foo", 'foo") OR 1=1 --',
                                     "'; DROP TABLE listings; --", "AND", "(((", "*", '"', ":", "-",
                                     "' OR ''='"])
def test_search_hostile_syntax_returns_200(api, seller, hostile):
    _, headers = seller
    listing = create(api, headers)
    r = api.get("/listings", params={"q": hostile})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"items", "total", "limit", "offset"}
    assert api.get(f"/listings/{listing['id']}").status_code == 200


@pytest.mark.parametrize(("params", "field", "detail"), [
    ({"limit": 0}, "limit", "limit: Input should be greater than or equal to 1"),
    ({"limit": 101}, "limit", "limit: Input should be less than or equal to 100"),
    ({"offset": -1}, "offset", "offset: Input should be greater than or equal to 0"),
    ({"limit": "ten"}, "limit", "limit: Input should be a valid integer, unable to parse string as an integer"),
    ({"sort": "cheapest"}, "sort",
     "sort: Input should be 'relevance', 'newest', 'price_asc' or 'price_desc'"),
    ({"q": "x" * 201}, "q", "q: String should have at most 200 characters"),
    ({"min_price": 5_000, "max_price": 4_000}, "max_price", "max_price must not be below min_price"),
])
def test_search_bad_parameter_names_it(api, params, field, detail):
    assert_problem(api.get("/listings", params=params), 422, "validation_failed", detail, field)


def test_search_deleted_listing_disappears(api, seller):
    _, headers = seller
    w = word()
    kept = create(api, headers, title=f"{w} kettle")
    gone = create(api, headers, title=f"{w} toaster")
    assert search(api, q=w)["total"] == 2
    assert api.delete(f"/listings/{gone['id']}", headers=headers).status_code == 204
    found = search(api, q=w)
    assert (found["total"], [i["id"] for i in found["items"]]) == (1, [kept["id"]])
