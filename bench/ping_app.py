"""The baseline for `bench api`: a bare FastAPI app with one JSON endpoint, served
the same way as the marketplace (uvicorn, one process), so the ratio shows what
the marketplace's own work costs.

    python -m uvicorn bench.ping_app:app --port 8001
"""

from __future__ import annotations

import os

from fastapi import FastAPI

# Answers with the serving process's id: how bench.api.Served knows that each of N workers
# (``--workers N``) is serving. Added last to both apps, so no measured path is matched later.
PID_PATH = "/bench/pid"

app = FastAPI(title="escrowlab ping baseline", openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/ping")
def ping() -> dict:
    return {"ok": True}


def pid() -> dict:
    return {"pid": os.getpid()}


app.add_api_route(PID_PATH, pid, include_in_schema=False)
