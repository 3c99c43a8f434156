"""One prediction for the web page: mask, overlay, polyp area, timing and optional Grad-CAM, as JSON."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import numpy as np

from polyp.gradcam import gradcam_image
from polyp.images import MASK_THRESHOLD, binary_mask, encode_image, overlay
from polyp.predict import Predictor


def _base64_png(array: np.ndarray) -> str:
    return base64.b64encode(encode_image(array)).decode("ascii")


class ModelRunner:
    """Runs a Predictor on one image at a time (Grad-CAM hooks the model, so requests must not overlap)."""

    def __init__(self, predictor: Predictor, threshold: float = MASK_THRESHOLD):
        self.predictor = predictor
        self.threshold = threshold
        self._lock = threading.Lock()

    def predict(self, image: np.ndarray, with_gradcam: bool = False) -> dict[str, Any]:
        """Segments one RGB uint8 image.

        Args:
            image: RGB uint8 (H,W,3), any size.
            with_gradcam: also compute the Grad-CAM overlay.

        Returns:
            JSON-able dict: width, height, area_fraction (mask pixels / all pixels), inference_ms (model
            input, forward pass and resize back, without PNG encoding), threshold, mask_png_base64
            (0/255 greyscale), overlay_png_base64, and gradcam_png_base64 with gradcam_ms if asked.
        """
        with self._lock:
            started = time.perf_counter()
            probability = self.predictor.probabilities([image])[0]
            inference_ms = (time.perf_counter() - started) * 1000
            mask = binary_mask(probability, self.threshold)
            result: dict[str, Any] = {
                "width": int(image.shape[1]), "height": int(image.shape[0]),
                "area_fraction": float(mask.mean()), "inference_ms": round(inference_ms, 2),
                "threshold": self.threshold,
                "mask_png_base64": _base64_png(mask * 255),
                "overlay_png_base64": _base64_png(overlay(image, mask)),
            }
            if with_gradcam:
                started = time.perf_counter()
                result["gradcam_png_base64"] = _base64_png(gradcam_image(self.predictor, image))
                result["gradcam_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return result
