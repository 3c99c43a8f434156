"""The FastAPI app: the page, model facts, example images, and `POST /predict` for the page and scripts."""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile

from polyp.checkpoint import CheckpointInfo
from polyp.data import DataError
from polyp.predict import Predictor
from polyp.serve.examples import Example
from polyp.serve.page import PAGE
from polyp.serve.runner import ModelRunner
from polyp.serve.uploads import ImageRejected, decode_upload

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and part headers around the file
UPLOAD_FIELD = "file"
logger = logging.getLogger("polyp.serve")

_PREDICT_BODY = {"requestBody": {"required": False, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}}}}}}}


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ImageRejected(413, f"the request is {int(declared):,} bytes; the limit is {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ImageRejected(413, f"the request is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(request: Request, body: bytes) -> Request:
    """A copy of `request` whose body is `body`, already read and size-checked."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, str | None]:
    """The bytes and declared content type of the multipart field `file`, within `max_bytes`.

    Raises:
        ImageRejected: 415 not a multipart form, 413 too large, 400 no file in the form.
    """
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ImageRejected(415, f"send the image as multipart/form-data in the field '{UPLOAD_FIELD}' "
                                 f"(curl -F {UPLOAD_FIELD}=@image.jpg), or choose an example with ?example=<id>")
    body = await _read_body(request, max_bytes + MULTIPART_OVERHEAD)
    async with _replay(request, body).form(max_files=1, max_fields=8) as form:
        upload = form.get(UPLOAD_FIELD)
        if not isinstance(upload, UploadFile):
            raise ImageRejected(400, f"the form has no file in the field '{UPLOAD_FIELD}'")
        return await upload.read(max_bytes + 1), upload.content_type


def _example(examples: list[Example], example_id: int) -> Example:
    if not 0 <= example_id < len(examples):
        raise HTTPException(404, f"no example {example_id}; the server lists {len(examples)} (ids 0 to {len(examples) - 1})"
                            if examples else "this server has no examples (start it with --examples DIR)")
    return examples[example_id]


def _read_example(example: Example):
    try:
        return example.read()
    except DataError as error:
        logger.error("example %s: %s", example.id, error)
        raise HTTPException(500, f"example {example.id} ({example.name}) could not be read on the server") from None


def create_app(predictor: Predictor, info: CheckpointInfo, examples: list[Example] | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> FastAPI:
    """The web app over one loaded model.

    Args:
        predictor: the loaded checkpoint (`Predictor.from_folder`).
        info: its `CheckpointInfo`, shown on the page.
        examples: example images listed at start (`list_examples`); clients pick them by id.
        max_upload_bytes: largest accepted upload.

    Returns:
        A FastAPI app serving `/`, `/api/info`, `/examples/{id}` and `POST /predict`.

    Example:
        >>> import uvicorn
        >>> predictor, info = Predictor.from_folder("runs/export/best")  # doctest: +SKIP
        >>> uvicorn.run(create_app(predictor, info), host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    examples = examples or []
    runner = ModelRunner(predictor)
    app = FastAPI(title="polyp-search: try the model", description="Polyp segmentation of one image at a time.")

    @app.exception_handler(ImageRejected)
    async def rejected(_request: Request, error: ImageRejected) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/info")
    def model_info() -> dict:
        return {"model": {"arch": info.config.arch, "encoder": info.config.encoder, "image_size": info.image_size},
                "examples": [{"id": e.id, "name": e.name} for e in examples], "max_upload_bytes": max_upload_bytes}

    @app.get("/examples/{example_id}")
    def example_image(example_id: int) -> FileResponse:
        example = _example(examples, example_id)
        return FileResponse(example.path, media_type=example.media_type)

    @app.post("/predict", openapi_extra=_PREDICT_BODY)
    async def predict(request: Request, example: int | None = None, gradcam: bool = False) -> dict:
        """Segments an uploaded JPEG/PNG (multipart field `file`) or the example `?example=<id>`."""
        if example is not None:
            image = await run_in_threadpool(_read_example, _example(examples, example))
        else:
            data, content_type = await read_upload(request, max_upload_bytes)
            image = await run_in_threadpool(decode_upload, data, content_type, max_upload_bytes)
        return await run_in_threadpool(runner.predict, image, gradcam)

    return app
