"""Tests of the person-search server (:mod:`cerberus.web`)."""


def local_client(app, **options):
    """FastAPI's test client sending ``Host: localhost`` (the server answers only the host
    names it was started for; the client's own default, ``testserver``, is refused)."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://localhost", **options)
