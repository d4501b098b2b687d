"""``cerberus serve``: a person-search web page and its JSON API (FastAPI, served by uvicorn).

One page and its routes over one gallery (a folder, a Milvus URI or an ``.npz`` index) and the
model it was built with; every search may be filtered by camera and time and answered per
track:

- ``POST /api/search/image``: reID by an uploaded photo, or by a gallery crop (``gallery_id``);
- ``POST /api/search/attributes``: APS by a possibly partial description (method §5.2);
- ``POST /api/describe``: PAR, the predicted attributes of an uploaded photo;
- ``GET /api/schema``: the attributes, group by group, that a description may use;
- ``GET /api/gallery``: its size and cameras, read again on every request (a gallery that
  another process adds to shows its new crops); ``GET /api/timeline/{item_id}``: "where else
  was this person?" (method §9.2);
- ``GET /api/health``; ``GET /api/gallery/{item_id}/image``: a gallery crop by its index number;
  ``GET /api/gallery/{item_id}/frame``: the source frame of a crop from footage, its box drawn
  (the server reads only the paths stored in the index, never a path a client gives);
  ``GET /api/gallery/{item_id}/track``: the track of a crop, its frames, times, crops and path
  (the page draws the path on the source frame).

This module is the routes, the host check and the static files; the search service they call
(model and gallery, the model lock, the rows) is :mod:`cerberus.web.service`. Queries, verdicts
and result rows come from the search layer the ``search`` command uses
(:class:`cerberus.search.Gallery`); uploads are embedded in memory. A clicked result searches
with that crop and leaves it out of its own results. Bad input is a 4xx answer whose ``detail``
is one line; the server goes on serving.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from PIL import Image

from cerberus.attributes.schema import GROUP_NAMES, GROUPS, Schema
from cerberus.errors import CerberusError, shown
from cerberus.search import Gallery
from cerberus.web.body_limit import Guard
from cerberus.web.hosts import LOCAL_HOSTS, HostCheck
from cerberus.web.protocol import HEADER_TIMEOUT
from cerberus.web.service import MAX_K, SearchService, no_paths
from cerberus.web.uploads import (  # noqa: F401 - the page's input checks, re-exported
    IMAGE_FORMATS,
    BadRequest,
    Limits,
    check_serve_options,
    decode_image,
    pillow_limit,
)

try:
    try:  # python-multipart, which FastAPI reads uploads with (its module's old name second)
        import python_multipart  # noqa: F401
    except ModuleNotFoundError:
        import multipart  # noqa: F401
    from fastapi import FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
    from starlette.exceptions import HTTPException
except ModuleNotFoundError as exc:  # the optional 'serve' extra is not installed
    raise CerberusError(
        f"cerberus serve needs FastAPI, uvicorn and python-multipart ({exc.name} is missing): "
        "pip install 'cerberus-reid[serve]'"
    ) from None

if TYPE_CHECKING:
    from cerberus.search import GalleryStore, InferenceModel

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 64 * 1024
"""The largest body of a JSON route (an attribute search is a few hundred bytes)."""

FORM_OVERHEAD = 64 * 1024
"""Room in an upload's body for the form's other fields and the multipart framing."""

UPLOAD_ROUTES = ("/api/search/image", "/api/describe")
"""Routes whose body is a multipart form with an image file (limit: image bytes + overhead)."""

BODY_TYPES = {
    "/api/search/attributes": ("application/json",),
    **{
        route: ("multipart/form-data", "application/x-www-form-urlencoded")
        for route in UPLOAD_ROUTES
    },
}
"""The content types each POST route reads its body as (the first is the one to name)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# --------------------------------------------------------------------------- request bodies


class AttributeSearch(BaseModel):
    """An attribute search: attribute name -> value name; attributes left out are "any".

    Fields other than these two are refused (422), never silently ignored.
    """

    model_config = ConfigDict(extra="forbid")

    attributes: dict[str, str] = Field(
        description='e.g. {"gender": "female", "upper.color": "red"}; names and values from '
        "GET /api/schema, case-insensitive; at least one attribute"
    )
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="number of results (an integer)")
    cameras: list[str] | None = Field(None, description="only these cameras (GET /api/gallery)")
    after: str | None = Field(None, description="only at or after: ISO-8601 with a zone")
    before: str | None = Field(None, description="only before: ISO-8601 with a zone")
    per_track: StrictBool = Field(False, description="one row per track (true or false)")
    track_score: Literal["max", "top3"] = Field("max", description="a track's score")
    exact: StrictBool = Field(False, description="search exactly, never the approximate index")
    nprobe: StrictInt | None = Field(
        None, ge=1, description="cells the approximate index probes (default: measured)"
    )


TopK = Annotated[int, Form(ge=1, le=MAX_K, description="number of results")]
"""The ``k`` form field of a photo search."""
Cameras = Annotated[list[str] | None, Form(description="only these cameras (repeat)")]
When = Annotated[str | None, Form(description="ISO-8601 with a zone")]
PerTrack = Annotated[bool, Form(description="one row per track")]
TrackScore = Annotated[Literal["max", "top3"], Form(description="a track's score")]
ExactForm = Annotated[bool, Form(description="search exactly, never the approximate index")]
NprobeForm = Annotated[
    int | None, Form(ge=1, description="cells the approximate index probes (default: measured)")
]


# --------------------------------------------------------------------------- image input


def read_upload(upload: UploadFile, limits: Limits) -> Image.Image:
    """Read at most ``limits.max_bytes + 1`` bytes of an upload and decode them."""
    return decode_image(upload.file.read(limits.max_bytes + 1), limits)


MAX_JSON_DEPTH = 32
"""How deeply a JSON body may nest (an attribute search nests 2 deep)."""


def _unparsed_body_line(cause: BaseException | None, body: bytes) -> str | None:
    """Why a JSON body the parser gave up on cannot be read, with its line and column: bytes
    that are not UTF-8, or nesting deeper than :data:`MAX_JSON_DEPTH`; ``None`` otherwise."""
    if isinstance(cause, UnicodeDecodeError):
        where = _line_column(body, cause.start)
        return f"request body is not valid JSON: not UTF-8 (byte 0x{body[cause.start]:02x}){where}"
    if isinstance(cause, RecursionError):
        at = _too_deep(body)
        where = "" if at is None else _line_column(body, at)
        return f"request body is not valid JSON: nested over {MAX_JSON_DEPTH} deep{where}"
    return None


def _line_column(body: bytes, pos: int) -> str:
    """`` at line L column C`` of byte ``pos`` of ``body`` (both from 1; columns in bytes)."""
    line = body.count(b"\n", 0, pos) + 1
    column = pos - (body.rfind(b"\n", 0, pos) + 1) + 1
    return f" at line {line} column {column}"


def _too_deep(body: bytes) -> int | None:
    """The offset of the first bracket of ``body`` nesting deeper than :data:`MAX_JSON_DEPTH`
    (strings skipped), or ``None``."""
    depth, in_string, escaped = 0, False, False
    for i, c in enumerate(body):
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return i
        elif c in (0x5D, 0x7D):
            depth -= 1
    return None


# --------------------------------------------------------------------------- the app


def schema_json(schema: Schema) -> dict[str, Any]:
    """A schema as the page builds its choices: the five groups in order, each with its
    attributes and their values (only the schema's public attributes are read)."""
    return {
        "name": schema.name,
        "groups": [
            {
                "key": g,
                "name": GROUP_NAMES[g],
                "attributes": [
                    {"name": a.name, "values": list(a.values)}
                    for a in schema.attributes
                    if a.group == g
                ],
            }
            for g in GROUPS
        ],
    }


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "bad request"


def _validation_line(exc: RequestValidationError) -> str:
    """FastAPI's list of validation errors -> ``"k: Input should be ..."`` (the first one);
    a body that is not JSON -> where its JSON breaks (line and column)."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return _json_error_line(first, exc.body)
    where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _one_line(f"{where + ': ' if where else ''}{first.get('msg', 'invalid')}{more}")


def _json_error_line(error: dict[str, Any], body: Any) -> str:
    """``"request body is not valid JSON: Expecting value at line 1 column 2"``."""
    reason = str((error.get("ctx") or {}).get("error", "cannot be parsed"))
    loc = error.get("loc", ())
    pos = loc[-1] if loc and isinstance(loc[-1], int) else None
    where = ""
    if isinstance(body, bytes | str) and pos is not None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        located = json.JSONDecodeError(reason, text, min(pos, len(text)))
        where = f" at line {located.lineno} column {located.colno}"
    return _one_line(f"request body is not valid JSON: {reason}{where}")


def _content_type(request: Request) -> str:
    """The request's media type, lower case, without parameters (``""`` when none)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _wrong_body_type(request: Request) -> str | None:
    """A sentence when a POST route got a body of another content type than it reads."""
    expected = BODY_TYPES.get(request.url.path)
    if expected is None or request.method != "POST":
        return None
    found = _content_type(request)
    if not found and request.headers.get("content-length", "0") == "0":
        return None  # no body at all: the missing fields are the answer
    if found in expected or ("application/json" in expected and found.endswith("+json")):
        return None
    got = f"got {shown(found)}" if found else "no Content-Type header"
    return f"{request.url.path} reads a {expected[0]} body ({got})"


def web_folder() -> Path:
    """The folder of the page's files (``cerberus/web``, package data)."""
    return Path(str(resources.files("cerberus.web") / "static"))


def _add_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": _one_line(message)}, status_code=status)

    @app.exception_handler(BadRequest)
    async def _bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return error(exc.status, no_paths(str(exc)))

    @app.exception_handler(CerberusError)
    async def _cerberus_error(request: Request, exc: CerberusError) -> JSONResponse:
        return error(400, no_paths(str(exc)))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and request.url.path in BODY_TYPES:
            said = _unparsed_body_line(exc.__cause__, await request.body())
            if said is not None:
                return error(422, said)
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        return JSONResponse(
            {"detail": _one_line(str(exc.detail))}, exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        wrong = _wrong_body_type(request)
        if wrong is not None:
            return error(415, wrong)
        return error(422, _validation_line(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server log has details")


def body_limit(path: str, limits: Limits) -> int:
    """The most body bytes a request to ``path`` may send: an upload route's image limit plus
    the form's framing, :data:`MAX_JSON_BYTES` for any other route."""
    return limits.max_bytes + FORM_OVERHEAD if path in UPLOAD_ROUTES else MAX_JSON_BYTES


def create_app(
    gallery: Gallery | GalleryStore,
    net: InferenceModel | None = None,
    *,
    limits: Limits | None = None,
    hosts: Sequence[str] = LOCAL_HOSTS,
) -> FastAPI:
    """The FastAPI app serving ``gallery`` (a :class:`~cerberus.search.Gallery`, or a gallery
    store with ``net``, the model it was built with) to requests whose ``Host`` is one of
    ``hosts`` (:func:`~cerberus.web.hosts.allowed_hosts`; this machine's names by default)."""
    if not isinstance(gallery, Gallery):
        gallery = Gallery(gallery, net)
    service = SearchService(gallery, limits or Limits())
    app = FastAPI(
        title="Cerberus person search",
        description="Find a person by photo (reID) or by a partial description (APS); "
        "describe a photo (PAR).",
        version="1",
        docs_url=None,  # Swagger / ReDoc pages load their scripts from a CDN: blank offline
        redoc_url=None,
    )
    app.state.service = service
    _add_error_handlers(app)
    app.add_middleware(
        Guard,
        limit_for=lambda path: body_limit(path, service.limits),
        headers=SECURITY_HEADERS,
    )
    app.add_middleware(HostCheck, hosts=hosts)  # outermost: before anything is read

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """Liveness and what is served."""
        return service.health()

    @app.get("/api/schema")
    def schema() -> dict[str, Any]:
        """The attributes a description may use, group by group, with their values."""
        return schema_json(service.schema)

    @app.post("/api/search/image")
    def search_image(
        image: Annotated[UploadFile | None, File(description="query photo")] = None,
        gallery_id: Annotated[int | None, Form(description="or: a gallery item as query")] = None,
        k: TopK = 10,
        cameras: Cameras = None,
        after: When = None,
        before: When = None,
        per_track: PerTrack = False,
        track_score: TrackScore = "max",
        exact: ExactForm = False,
        nprobe: NprobeForm = None,
    ) -> dict[str, Any]:
        """reID: the gallery crops most like a photo (or a gallery crop), with its attributes."""
        if (image is None) == (gallery_id is None):
            raise BadRequest("give exactly one of: an image file, a gallery_id")
        options = service.options(cameras, after, before, per_track, track_score, exact, nprobe)
        if gallery_id is not None:
            return service.search_gallery_item(gallery_id, k, **options)
        with service.upload(image.file) as picture:
            return service.search_image(picture, k, **options)

    @app.post("/api/search/attributes")
    def search_attributes(body: AttributeSearch) -> dict[str, Any]:
        """APS: the gallery crops that best match a (partial) description."""
        options = service.options(
            body.cameras, body.after, body.before, body.per_track, body.track_score,
            body.exact, body.nprobe,
        )  # fmt: skip
        return service.search_attributes(body.attributes, body.k, **options)

    @app.get("/api/gallery")
    def gallery_now() -> dict[str, Any]:
        """The gallery's size and cameras now (a gallery may grow while it is served)."""
        return service.gallery_json()

    @app.get("/api/timeline/{item_id}")
    def timeline(
        item_id: int,
        camera: Annotated[list[str] | None, Query(description="only these cameras")] = None,
        after: Annotated[str | None, Query(description="ISO-8601 with a zone")] = None,
        before: Annotated[str | None, Query(description="ISO-8601 with a zone")] = None,
        exact: Annotated[bool, Query(description="search exactly")] = False,
        nprobe: Annotated[int | None, Query(ge=1, description="cells probed")] = None,
    ) -> dict[str, Any]:
        """Where else was the person of a gallery crop: sightings by camera and time."""
        options = service.options(camera, after, before, exact=exact, nprobe=nprobe)
        return service.timeline(
            item_id, where=options["where"], exact=exact, nprobe=options["nprobe"]
        )

    @app.post("/api/describe")
    def describe(image: Annotated[UploadFile, File(description="photo to describe")]) -> dict:
        """PAR: the predicted attributes of a photo (nearest SID prototype per group)."""
        with service.upload(image.file) as picture:
            return service.describe_image(picture)

    @app.get(
        "/api/gallery/{item_id}/image",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
    )
    def gallery_image(item_id: int) -> Response:
        """A gallery crop by its id (from a search result), as JPEG or PNG."""
        data, media = service.gallery_image(item_id)
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @app.get(
        "/api/gallery/{item_id}/frame",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def gallery_frame(item_id: int) -> Response:
        """The source frame of a crop from footage, its box drawn (JPEG)."""
        return Response(service.frame_jpeg(item_id), media_type="image/jpeg")

    @app.get("/api/gallery/{item_id}/track")
    def gallery_track(item_id: int) -> dict[str, Any]:
        """The track of a crop: its first and last frame and time, crops and path
        (``[[frame, left, top, right, bottom], ...]`` and which boxes a detection matched),
        with the crop's frame and box; ``track`` null for a crop without a track."""
        return service.item_track(item_id)

    web = web_folder()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((web / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=web), name="static")
    return app


def check_host(host: str) -> None:
    """Warn when the server listens beyond this machine."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        logger.warning(
            "listening on %s: anyone who can reach this machine can search the gallery "
            "(requests must name this machine as --host or an --allowed-host)",
            host,
        )


def _uvicorn():
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise CerberusError(
            "cerberus serve needs uvicorn: pip install 'cerberus-reid[serve]'"
        ) from None
    return uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (``port`` 0: a free one), or a one-line
    :class:`CerberusError` when the port is taken or the address is not this machine's."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except socket.gaierror:
        raise CerberusError(f"--host {host}: not an address of this machine") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CerberusError(
                f"--port {port}: already in use on {host}; give another --port or stop the "
                "server using it"
            ) from None
        raise CerberusError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})"
        ) from None


def _server(app: FastAPI, header_timeout: float, log_level: str, lifespan: str = "auto"):
    from cerberus.web.protocol import header_timeout_protocol

    uvicorn = _uvicorn()
    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan=lifespan,
        http=header_timeout_protocol(header_timeout),
    )
    return uvicorn.Server(config)


@contextmanager
def background_server(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    header_timeout: float = HEADER_TIMEOUT,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free port of ``host``; yields its base URL.

    For the browser test and scripts: the server stops when the ``with`` block ends.
    """
    sock = bind(host, 0)
    server = _server(app, header_timeout, "warning", lifespan="off")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise CerberusError(f"the test server did not start on {host} in {timeout:.0f}s")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter: allocations at least this large are mapped (and unmapped
when freed) instead of taken from a thread's heap arena."""


def return_large_blocks_to_the_system(threshold: int = 4 * 2**20) -> bool:
    """Make freed decoded images go back to the system at once (glibc only; ``False``
    elsewhere): Pillow holds an image in blocks of up to 16 MiB, and glibc otherwise raises its
    mapping threshold after the first large free, so later images come from per-thread heap
    arenas that keep the memory (an upload of 4096 x 4096 pixels decoded on each of 40 server
    threads kept 1 GB resident after it was answered)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


def run_server(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    announce: str | None = None,
    header_timeout: float = HEADER_TIMEOUT,
) -> None:
    """Serve ``app`` with uvicorn until interrupted: the port is bound first (a port in use is
    a one-line :class:`CerberusError`), then ``announce`` is printed, then requests are
    answered; a connection gets ``header_timeout`` seconds to send a request's headers."""
    if not 1 <= port <= 65535:
        raise CerberusError(f"--port {port}: must be between 1 and 65535")
    sock = bind(host, port)
    check_host(host)
    return_large_blocks_to_the_system()
    if announce:
        print(announce, flush=True)
    try:
        _server(app, header_timeout, "info").run(sockets=[sock])
    finally:
        sock.close()
