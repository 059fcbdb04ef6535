"""The web app over an index: pages to browse and search it, and a JSON API (FastAPI).

Read-only by construction: no route writes to the index. Files are served by entry id only, from
the paths the index recorded, while they hold what was indexed (SHA-256), decoded and encoded again;
a path in a request is never opened. Bodies, hosts and headers pass ``visret.serve.guards`` first; an
upload is held in memory and decoded with the same pixel limit as indexing; nothing a client sends
is unpickled. Routes are plain functions, so FastAPI runs them in its thread pool and a slow query
never blocks the event loop; decoding holds pixels of a shared budget (``visret.serve.budget``), so
a huge upload decodes alone and memory does not grow with clients, and the IVF / HNSW settings a
request asks for hold only while its own search runs.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import threading
from pathlib import Path
from typing import Any, Sequence

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from PIL import Image

from visret.version import __version__
from visret.errors import VisretError
from visret.features._extractor import InputSpec
from visret.features._output import checked_query_features
from visret.images._decode import DEFAULT_MAX_PIXELS, ImageReadError, decode, read_file
from visret.serve.budget import PixelBudget, pixels_of, return_large_blocks_to_the_system
from visret.serve.guards import Guards, host_names
from visret.serve.live import LiveIndex

#: Largest upload accepted, by default (``visret serve --max-upload``).
DEFAULT_MAX_UPLOAD = 20 * 2**20
#: Thumbnail side in pixels, and entries per page of the overview.
THUMB_SIDE, PAGE = 160, 60
#: The largest k a request may ask for.
MAX_K = 200
#: Pixels decoded at once, all requests together: four 12-megapixel photographs.
DECODE_BUDGET = 48_000_000
#: Bytes a multipart request may carry beyond its file (field names, boundaries).
FORM_OVERHEAD = 64 * 1024
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
SCRIPT = (Path(__file__).with_name("templates") / "app.js").read_bytes()


def create_app(
    index: str | Path, max_upload: int = DEFAULT_MAX_UPLOAD, max_pixels: int = DEFAULT_MAX_PIXELS, *,
    host: str = "127.0.0.1", allow_hosts: Sequence[str] = (),
) -> FastAPI:
    """The ASGI app serving the index at ``index`` (opened now: a bad index fails here, not later).

    Requests must name ``host`` (the listening address), a loopback name or one of ``allow_hosts``
    in their ``Host`` header (any, when listening on every interface); see ``visret.serve.guards``.
    """
    live = LiveIndex(index)
    app = FastAPI(title="visret", version=__version__, description="Search and browse a visret index.")
    app.add_middleware(Guards, max_body=max_upload + FORM_OVERHEAD, hosts=host_names(host, allow_hosts))

    def error_answer(request: Request, status: int, detail: Any):
        """JSON for the API and files, an HTML page for the pages."""
        if request.url.path.startswith(("/api/", "/thumb/", "/image/")):
            return JSONResponse({"detail": detail}, status_code=status)
        shown = detail if isinstance(detail, str) else "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in detail)
        return TEMPLATES.TemplateResponse(request, "error.html", {"status": status, "detail": shown}, status_code=status)

    @app.exception_handler(VisretError)
    def user_error(request: Request, exc: VisretError):
        return error_answer(request, 400, str(exc))

    @app.exception_handler(RequestValidationError)
    def bad_request(request: Request, exc: RequestValidationError):
        return error_answer(request, 422, jsonable_encoder(exc.errors()))

    return_large_blocks_to_the_system()
    budget = PixelBudget(DECODE_BUDGET)
    searching = threading.Lock()

    # ---- helpers ------------------------------------------------------------------------
    def entry_or_404(index, entry_id: str):
        """The entry named by a path segment that must be a plain id: anything else is not found."""
        if not (entry_id.isascii() and entry_id.isdigit()) or len(entry_id) > 18:
            raise HTTPException(404, "no such entry")
        found = index.entry(int(entry_id))
        if found is None:
            raise HTTPException(404, "no such entry")
        return found

    def read_upload(file: UploadFile) -> bytes:
        data = file.file.read(max_upload + 1)
        if len(data) > max_upload:
            raise HTTPException(413, f"the upload is larger than {max_upload} bytes")
        if not data:
            raise HTTPException(400, "the upload is empty")
        return data

    def checked_k(k: int) -> int:
        if not 1 <= k <= MAX_K:
            raise HTTPException(400, f"k must be between 1 and {MAX_K}, got {k}")
        return k

    def checked_settings(nprobe: int | None, ef_search: int | None) -> tuple[int | None, int | None]:
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
            if value is not None and not 1 <= value <= 4096:
                raise HTTPException(400, f"{name} must be between 1 and 4096, got {value}")
        return nprobe, ef_search

    def searched(index, search, nprobe: int | None = None, ef_search: int | None = None):
        """``search()`` with this request's IVF / HNSW settings (the index's own where it names none)."""
        saved = index.manifest["search"]
        with searching:
            index.set_search_params(nprobe or saved.get("nprobe"), ef_search or saved.get("ef_search"))
            return search()

    def query_upload(data: bytes, k: int, nprobe=None, ef_search=None, name: str = "upload"):
        index, k = live.current(), checked_k(k)
        nprobe, ef_search = checked_settings(nprobe, ef_search)
        with budget.hold(pixels_of(data)):
            try:
                array = decode(data, index.extractor.input_spec, max_pixels)
            except ImageReadError as exc:
                raise HTTPException(400, f"not a readable image: {exc}") from None
            output = index.extractor.extract([array])  # the server's own failures are not the upload's
            try:
                features = checked_query_features(index.extractor, output, 1, "the upload")
            except VisretError as exc:
                raise HTTPException(422, str(exc)) from None
            vector = index.distance.prepare(features)
            return searched(index, lambda: index.query_vectors(vector, k, names=[name])[0], nprobe, ef_search)

    def decoded_thumbnail(data: bytes) -> bytes:
        with budget.hold(pixels_of(data)):
            return thumbnail_bytes(io.BytesIO(data), max_pixels)

    def similar(index, entry, k: int, nprobe=None, ef_search=None):
        k = checked_k(k)
        nprobe, ef_search = checked_settings(nprobe, ef_search)
        return searched(index, lambda: index.similar_by_id(entry.id, k), nprobe, ef_search)

    def file_bytes(entry) -> bytes:
        """The entry's file, only while it holds what was indexed (its SHA-256): a file replaced,
        or a link pointed elsewhere since, is never served."""
        try:
            data = read_file(entry.path)
        except ImageReadError:
            raise HTTPException(404, "the indexed file cannot be read any more") from None
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise HTTPException(404, "the indexed file has changed since it was indexed") from None
        return data

    def info(index) -> dict[str, Any]:
        manifest = index.manifest
        return {
            "path": str(index.path), "count": len(index), "extractor": manifest["extractor"], "metric": manifest["metric"],
            "factory": manifest["factory"], "search": manifest["search"], "rerank": manifest.get("rerank"),
            "classes": index.label_counts(), "visret_version": manifest["visret_version"],
        }

    def page(request: Request, template: str, **context) -> HTMLResponse:
        index = live.current()
        tunable = any(part in index.manifest["factory"].upper() for part in ("IVF", "HNSW"))
        return TEMPLATES.TemplateResponse(request, template, {"info": info(index), "tunable": tunable, **context})

    # ---- the JSON API -------------------------------------------------------------------
    @app.get("/api/info", tags=["api"])
    def api_info() -> dict[str, Any]:
        """How the index was built, and its classes with their counts."""
        return info(live.current())

    @app.post("/api/query", tags=["api"])
    def api_query(image: UploadFile = File(...), k: int = Form(5), nprobe: int | None = Form(None), ef_search: int | None = Form(None)):
        """The k nearest entries to an uploaded image: the JSON of ``visret query --json``."""
        return [query_upload(read_upload(image), k, nprobe, ef_search, image.filename or "upload").to_dict()]

    @app.get("/api/entries", tags=["api"])
    def api_entries(label: str | None = None, offset: int = Query(0, ge=0, le=2**40), limit: int = Query(PAGE, ge=1, le=1000)):
        """Entries in id order, optionally of one class."""
        index = live.current()
        total = index.label_counts().get(label, 0) if label is not None else len(index)
        return {"total": total, "offset": offset, "entries": [e.to_dict() for e in index.page(label, offset, limit)]}

    @app.get("/api/similar/{entry_id}", tags=["api"])
    def api_similar(entry_id: str, k: int = 5, nprobe: int | None = None, ef_search: int | None = None):
        """The k entries nearest to an indexed one, itself left out."""
        index = live.current()
        return similar(index, entry_or_404(index, entry_id), k, nprobe, ef_search).to_dict()

    @app.get("/thumb/{entry_id}", tags=["files"])
    def thumb(entry_id: str):
        """A JPEG thumbnail of an entry, at most 160 pixels a side."""
        entry = entry_or_404(live.current(), entry_id)
        data = live.thumbnail((entry.sha256, THUMB_SIDE), lambda: decoded_thumbnail(file_bytes(entry)))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/image/{entry_id}", tags=["files"])
    def image(entry_id: str):
        """An entry's image, decoded and encoded again (JPEG for JPEG files, else PNG): the bytes
        served are always an image this server made, never the file's own."""
        entry = entry_or_404(live.current(), entry_id)
        data = file_bytes(entry)
        with budget.hold(pixels_of(data)):
            try:
                data, media_type = reencoded(data)
            except ImageReadError:
                raise HTTPException(404, "the indexed file can no longer be read as an image") from None
        return Response(data, media_type=media_type)

    # ---- pages --------------------------------------------------------------------------
    @app.get("/app.js", include_in_schema=False)
    def script():
        """The pages' one script, served from here so that the content policy can forbid inline ones."""
        return Response(SCRIPT, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview(request: Request, label: str | None = None, page_number: int = Query(1, alias="page", ge=1, le=2**32)):
        index = live.current()
        total = index.label_counts().get(label, 0) if label else len(index)
        entries = index.page(label or None, (page_number - 1) * PAGE, PAGE)
        return page(request, "overview.html", entries=entries, label=label or "", page=page_number, pages=max(1, -(-total // PAGE)), total=total)

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    def search_entry(request: Request, id: str, k: int = 12, nprobe: int | None = None, ef_search: int | None = None):
        index = live.current()
        entry = entry_or_404(index, id)
        result = similar(index, entry, k, nprobe, ef_search)
        return page(request, "results.html", result=result, query=entry, k=k, nprobe=nprobe, ef_search=ef_search, upload=None)

    @app.post("/search", response_class=HTMLResponse, include_in_schema=False)
    def search_upload(request: Request, image: UploadFile = File(...), k: int = Form(12), nprobe: int | None = Form(None), ef_search: int | None = Form(None)):
        data = read_upload(image)
        result = query_upload(data, k, nprobe, ef_search, image.filename or "upload")
        preview = base64.b64encode(decoded_thumbnail(data)).decode("ascii")  # decoded again: within the budget too
        return page(request, "results.html", result=result, query=None, k=k, nprobe=nprobe, ef_search=ef_search, upload=preview)

    @app.get("/entry/{entry_id}", response_class=HTMLResponse, include_in_schema=False)
    def entry_page(request: Request, entry_id: str, k: int = 8):
        index = live.current()
        entry = entry_or_404(index, entry_id)
        added = datetime.datetime.fromtimestamp(entry.added_at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return page(request, "entry.html", entry=entry, added=added, result=similar(index, entry, k))

    @app.get("/evaluation", response_class=HTMLResponse, include_in_schema=False)
    def evaluation(request: Request):
        if not live.current().label_counts():
            raise HTTPException(400, "the index has no labels to evaluate against")
        report, picture = live.cached("evaluation", lambda index: searched(index, lambda: leave_one_out(index)))
        return page(request, "evaluation.html", report=report, picture=picture)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException):
        return error_answer(request, exc.status_code, exc.detail)

    app.state.live = live
    return app


def leave_one_out(index) -> tuple[Any, str]:
    """Leave-one-out k-NN quality of the index, and its confusion matrix as a base64 PNG."""
    import tempfile

    from visret.evaluation._knn import evaluate_knn
    from visret.reports.plots import save_confusion

    report = evaluate_knn(index=index, k=5, at=(1, 5, 10))
    with tempfile.TemporaryDirectory(prefix="visret-serve-") as scratch:
        path = save_confusion(report.confusion_matrix, report.classes, Path(scratch) / "confusion.png", title="leave-one-out confusion")
        return report, base64.b64encode(path.read_bytes()).decode("ascii")


def thumbnail_bytes(source, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A JPEG at most ``THUMB_SIDE`` pixels a side, from a path or a file object (a grey tile for
    what cannot be read or holds more than ``max_pixels``)."""
    try:
        with Image.open(source) as image:
            if image.width * image.height > max_pixels:
                raise ValueError("too many pixels")
            image.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
            picture = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        picture = Image.new("RGB", (THUMB_SIDE, THUMB_SIDE), (230, 230, 230))
    picture.thumbnail((THUMB_SIDE, THUMB_SIDE))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=85)
    return out.getvalue()


def reencoded(data: bytes) -> tuple[bytes, str]:
    """``(bytes, media type)`` of an image decoded the way visret reads images (8-bit RGB, turned
    upright, 16-bit and float scaled, within the pixel limit), then encoded again."""
    pixels = decode(data, InputSpec(mode="RGB"))
    out = io.BytesIO()
    if data[:3] == b"\xff\xd8\xff":  # a JPEG stays a JPEG (PNG would be several times larger)
        Image.fromarray(pixels).save(out, format="JPEG", quality=92)
        return out.getvalue(), "image/jpeg"
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue(), "image/png"
