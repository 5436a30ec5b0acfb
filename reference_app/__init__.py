"""The reference marketplace (FastAPI): api/ -> services/ -> store/. Arrives with issue 3."""
