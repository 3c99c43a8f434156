"""The web page and JSON endpoint of `python -m polyp.serve`: real, broken, oversized and foreign uploads."""

from __future__ import annotations

import base64
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from polyp.checkpoint import save_checkpoint
from polyp.config import TrainConfig
from polyp.data.synthetic import make_sample, write_synthetic
from polyp.models import build_model
from polyp.predict import Predictor
from polyp.serve import create_app, list_examples
from polyp.serve.__main__ import main

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[1] / "test-output" / "serve-screenshot.png"
UPLOAD_LIMIT = 200_000  # bytes; small so that the 413 test stays cheap


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict]:
    """An untrained 64 px U-Net checkpoint, four synthetic example images, and the app over them."""
    root = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POLYP_CACHE", str(root / "cache"))
        torch.manual_seed(0)
        cfg = TrainConfig(arch="unet", encoder="resnet18", image_size=64)
        save_checkpoint(build_model(cfg), cfg, root / "model")
        write_synthetic(root / "data", count=4, size=64)
        predictor, info = Predictor.from_folder(root / "model")
        examples = list_examples(root / "data")
        yield {"root": root, "app": create_app(predictor, info, examples, max_upload_bytes=UPLOAD_LIMIT)}


@pytest.fixture(scope="module")
def client(served) -> TestClient:
    return TestClient(served["app"])


def encoded(image_format: str, width: int = 80, height: int = 60) -> bytes:
    """A synthetic colonoscopy-like image of this size as JPEG or PNG bytes."""
    image, _ = make_sample(seed=3, size=64)
    bgr = cv2.cvtColor(cv2.resize(image, (width, height)), cv2.COLOR_RGB2BGR)
    return cv2.imencode(f".{image_format}", bgr)[1].tobytes()


def decoded_png(text: str, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    data = base64.b64decode(text)
    assert data.startswith(b"\x89PNG")
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk stating this size, with no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_page_and_info_list_the_examples(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>Polyp segmentation</title>" in page.text
    info = client.get("/api/info").json()
    assert [e["name"] for e in info["examples"]] == [f"synth_{i:04d}.jpg" for i in range(4)]
    assert info["model"] == {"arch": "unet", "encoder": "resnet18", "image_size": 64}
    thumbnail = client.get("/examples/2")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("image_format", ["jpg", "png"])
def test_predict_returns_mask_overlay_and_numbers_for_a_real_image(client, image_format):
    mime = "image/jpeg" if image_format == "jpg" else "image/png"
    response = client.post("/predict", files={"file": (f"frame.{image_format}", encoded(image_format), mime)})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["width"], answer["height"]) == (80, 60)
    mask = decoded_png(answer["mask_png_base64"])
    assert mask.shape == (60, 80) and set(np.unique(mask)) <= {0, 255}
    assert answer["area_fraction"] == pytest.approx((mask == 255).mean())
    assert decoded_png(answer["overlay_png_base64"], cv2.IMREAD_COLOR).shape == (60, 80, 3)
    assert answer["inference_ms"] > 0
    assert "gradcam_png_base64" not in answer


def test_predict_an_example_by_id_with_gradcam(client):
    answer = client.post("/predict", params={"example": 1, "gradcam": "true"}).json()
    assert (answer["width"], answer["height"]) == (64, 64)
    assert decoded_png(answer["gradcam_png_base64"], cv2.IMREAD_COLOR).shape == (64, 64, 3)


def test_the_app_serves_with_onnx_runtime_as_it_does_with_pytorch(served, client):
    predictor, info = Predictor.from_folder(served["root"] / "model", runtime="onnx")
    onnx_client = TestClient(create_app(predictor, info, list_examples(served["root"] / "data")))
    ours = onnx_client.post("/predict", params={"example": 2, "gradcam": "true"}).json()
    theirs = client.post("/predict", params={"example": 2}).json()
    assert ours["inference_ms"] > 0 and decoded_png(ours["gradcam_png_base64"], cv2.IMREAD_COLOR).shape == (64, 64, 3)
    mask, expected = decoded_png(ours["mask_png_base64"]), decoded_png(theirs["mask_png_base64"])
    assert mask.shape == expected.shape and (mask != expected).mean() < 0.01  # bf16 PyTorch against float32 ONNX


@pytest.mark.parametrize("name, data, status", [
    ("empty", b"", 400),
    ("truncated PNG", encoded("png")[:60], 400),
    ("JPEG magic then noise", b"\xff\xd8\xff" + bytes(range(256)) * 4, 400),
    ("corrupt PNG pixels", encoded("png")[:40] + b"\x00" * 500, 400),
    ("text", b"this is not an image", 415),
    ("GIF", b"GIF89a" + b"\x00" * 100, 415),
    ("too many bytes", b"\x89PNG\r\n\x1a\n" + b"\x00" * (UPLOAD_LIMIT + 10), 413),
    ("too many pixels", png_claiming(50_000, 50_000), 413),
])
def test_broken_or_foreign_uploads_get_a_4xx_with_a_message(client, name, data, status):
    response = client.post("/predict", files={"file": ("upload.png", data, "image/png")})
    assert response.status_code == status, f"{name}: {response.text}"
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_the_declared_type_and_the_form_are_checked(client):
    as_text = client.post("/predict", files={"file": ("a.png", encoded("png"), "text/plain")})
    assert as_text.status_code == 415 and "text/plain" in as_text.json()["detail"]
    no_file = client.post("/predict", data={"other": "x"}, files={"note": ("n.txt", b"x", "image/png")})
    assert no_file.status_code == 400 and "'file'" in no_file.json()["detail"]
    raw = client.post("/predict", content=encoded("png"), headers={"content-type": "image/png"})
    assert raw.status_code == 415 and "multipart/form-data" in raw.json()["detail"]


@pytest.mark.parametrize("example, status", [("4", 404), ("-1", 404), ("../../etc/passwd", 422), ("0.5", 422)])
def test_examples_are_picked_only_by_listed_id(client, example, status):
    assert client.post("/predict", params={"example": example}).status_code == status
    assert client.get(f"/examples/{example}").status_code in (404, 422)


def test_the_command_refuses_a_missing_checkpoint(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nothing")]) == 2
    assert "checkpoint folder does not exist" in capsys.readouterr().err


@contextmanager
def running_server(app) -> Iterator[str]:
    """Serves `app` with uvicorn on a free port of 127.0.0.1 in a thread; yields the base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (make browser installs it)")
def test_the_page_in_headless_chromium_shows_an_example_prediction(served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    with running_server(served["app"]) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1320, "height": 820})
            page.goto(url)
            page.get_by_label("also show the Grad-CAM map").check()
            page.locator("#examples button").nth(1).click()
            page.wait_for_selector("#result:not([hidden])", timeout=20_000)
            page.wait_for_function("['image-view', 'overlay-view', 'mask-view', 'gradcam-view'].every("
                                   "id => document.getElementById(id).naturalWidth > 0)", timeout=10_000)
            area, title = page.text_content("#area"), page.text_content("#result-title")
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            page.set_input_files("#file", files=[{"name": "broken.png", "mimeType": "image/png",
                                                  "buffer": encoded("png")[:60]}])
            error = page.wait_for_selector("#error:not([hidden])", timeout=10_000).text_content()
        finally:
            browser.close()
    assert title == "synth_0001.jpg"
    assert area.endswith(" %") and 0 <= float(area.split()[0]) <= 100
    assert SCREENSHOT.stat().st_size > 10_000
    assert error.startswith("Could not predict broken.png: the PNG file is broken")
