"""The authorization matrix: every operation of the OpenAPI document, as every
role, on an object of the sender's own and on someone else's (the IDOR attempt),
against the expected allow/deny in ``authz_matrix.MATRIX``. An operation without
a row fails the test, so a new endpoint needs its row before it ships."""

from __future__ import annotations

import pytest

from tests.hardening import authz
from tests.hardening.authz_matrix import MATRIX

pytestmark = pytest.mark.cluster


def test_matrix_has_a_row_for_every_operation(hardened_market):
    ops = set(authz.operations(hardened_market.http.app.openapi()))
    assert not ops - MATRIX.keys(), f"operations without a matrix row: {sorted(ops - MATRIX.keys())}"
    assert not MATRIX.keys() - ops, f"matrix rows for operations that are gone: {sorted(MATRIX.keys() - ops)}"
    for op, row in MATRIX.items():
        assert set(row) <= set(authz.ROLES) | {"*"}, f"{op}: unknown role in {sorted(row)}"
        for role in authz.ROLES:
            assert authz.expected(row, role, "any") in (authz.ALLOW, authz.DENY), f"{op}: no cell for {role}"


def test_every_cell_gets_its_expected_answer(hardened_market, personas):
    objects = authz.Objects(personas)
    objects.setup()
    answers: dict[tuple[str, str, str], int] = {}
    cells = authz.run(personas, objects, authz.operations(hardened_market.http.app.openapi()),
                      lambda op, role, variant, status: answers.__setitem__((op, role, variant), status))
    wrong = [f"{op} as {role}{'' if variant == 'any' else ' (' + variant + ')'}: expected "
             f"{authz.expected(MATRIX[op], role, variant)}, got {verdict} (HTTP {answers[(op, role, variant)]})"
             for (op, role, variant), verdict in cells.items()
             if verdict != authz.expected(MATRIX[op], role, variant)]
    print(f"\nauthorization matrix: {len(cells)} cells over {len(MATRIX)} operations")
    assert len(cells) >= len(MATRIX) * len(authz.ROLES)
    assert not wrong, "cells that differ:\n" + "\n".join(wrong)


def test_another_partys_order_answers_exactly_like_an_order_that_does_not_exist(hardened_market, personas):
    """A 403 told a stranger that the order exists, so anyone could count the orders; the
    answer is now the nonexistent order's 404, body and all (only the id differs)."""
    objects = authz.Objects(personas)
    objects.setup()
    other, missing = objects.orders["other"], 10 ** 9
    ops = [op for op in authz.operations(hardened_market.http.app.openapi()) if "{order_id}" in op]
    assert len(ops) >= 10
    for op in ops:
        method, template = op.split(" ", 1)
        for role in ("buyer", "seller", "courier", "arbiter"):
            answers = []
            for order_id in (other, missing):
                kwargs = {"headers": {"Authorization": f"Bearer {personas.token(role)}"}}
                if method != "GET":
                    kwargs["json"] = authz.BODIES.get(op, {})
                r = hardened_market.http.request(method, template.replace("{order_id}", str(order_id)), **kwargs)
                body = r.json()
                answers.append((r.status_code, {**body, "detail": body.get("detail", "").replace(str(order_id), "N")}))
            assert answers[0] == answers[1], f"{op} as {role}: {answers[0]} for another's order, {answers[1]} for none"
            assert answers[0][0] == 404, f"{op} as {role}: {answers[0]}"
