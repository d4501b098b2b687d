"""The person-search page: the FastAPI app, its uploads, body limit and static files (method §9)."""
