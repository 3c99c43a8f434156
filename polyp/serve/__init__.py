"""A small web page and JSON endpoint to try an exported checkpoint on colonoscopy images.

Example:
    python -m polyp.serve --model runs/export/best --examples data/kvasir/images
    curl -F file=@photo.jpg 'http://127.0.0.1:8000/predict?gradcam=true'
"""

from __future__ import annotations

from polyp.serve.app import DEFAULT_MAX_UPLOAD_BYTES, create_app
from polyp.serve.examples import Example, list_examples
from polyp.serve.uploads import ImageRejected, decode_upload

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "Example", "ImageRejected", "create_app", "decode_upload", "list_examples"]
