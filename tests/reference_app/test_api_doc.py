"""docs/api.md lists every error code the API can return, with its HTTP status: a new
domain error without a row fails here, so the page stays true."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import reference_app
from reference_app.services.errors import DomainError

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
# Codes the exception handlers in reference_app/api/errors.py give, beside the domain errors'.
HANDLER_CODES = {"validation_failed": "422", "not_found": "404", "method_not_allowed": "405",
                 "not_authenticated": "401", "http_error": "other"}
NEVER_RAISED = {"error", "deadline_passed"}  # the base class, and a name no service raises


def domain_errors() -> set[type[DomainError]]:
    for info in pkgutil.walk_packages(reference_app.__path__, "reference_app."):
        if ".migrations" not in info.name and ".web" not in info.name:
            importlib.import_module(info.name)
    found, todo = set(), [DomainError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


def documented() -> dict[str, str]:
    return dict(re.findall(r"^\| `(\w+)` \| (\d{3}|other) \|", DOC.read_text(), re.M))


def test_every_error_code_is_documented_with_its_status():
    codes = {cls.code: str(cls.status) for cls in domain_errors() if cls.code not in NEVER_RAISED}
    assert {"payout_in_flight", "rate_limited", "timelock_not_reached"} <= set(codes)
    expected = {**codes, **HANDLER_CODES}
    table = documented()
    assert {c: table.get(c) for c in expected if table.get(c) != expected[c]} == {}, \
        "docs/api.md's error table misses these codes or gives another status"
    assert set(table) - set(expected) == set(), "docs/api.md lists codes the API never returns"


def test_codes_left_out_are_never_raised():
    source = "\n".join(p.read_text() for p in Path(reference_app.__file__).parent.rglob("*.py"))
    assert not re.search(r"raise (DeadlinePassed|DomainError)\(", source)
