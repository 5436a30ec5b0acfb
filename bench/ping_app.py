"""The baseline for `bench api`: a bare FastAPI app with one JSON endpoint, served
the same way as the marketplace (uvicorn, one process), so the ratio shows what
the marketplace's own work costs.

    python -m uvicorn bench.ping_app:app --port 8001
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="escrowlab ping baseline", openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/ping")
def ping() -> dict:
    return {"ok": True}
