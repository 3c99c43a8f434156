"""Prediction on a stream, one frame at a time as an endoscope delivers them: a video file (what OpenCV's
FFmpeg decodes) or a folder of ordered frames. Writes the overlay video and each frame's mask, can average each
frame's probabilities with the previous K frames', and measures frames per second.

Example:
    python -m polyp.predict --model runs/export/best --input clip.mp4 --out overlay.mp4 --smooth 2
    python -m polyp.predict --model runs/export/best --input frames/ --sequence --out overlay.mp4
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp.data import DataError, read_image
from polyp.data.folder import IMAGE_SUFFIXES
from polyp.images import MASK_THRESHOLD, binary_mask, overlay, write_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv")
WRITTEN_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}  # overlay video container -> FourCC OpenCV writes it with
DEFAULT_FPS = 25.0  # a folder of frames has no rate of its own


@dataclass
class StreamResult:
    """What a stream run did: frames written, wall seconds (reading, model, writing), the model's share of them,
    and why it stopped early ("" when every frame was done)."""

    frames: int
    seconds: float
    model_seconds: float
    problem: str = ""

    @property
    def fps(self) -> float:
        """Frames per second of the whole loop."""
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def model_fps(self) -> float:
        """Frames per second of the model alone (pre-processing and forward pass)."""
        return self.frames / self.model_seconds if self.model_seconds else 0.0


def natural_key(path: Path) -> list:
    """Sorts frame names as a person counts them: frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.stem)]


def frame_paths(folder: Path) -> list[Path]:
    """The images of a folder of frames, in their natural order; DataError when it holds none."""
    if not folder.is_dir():
        raise DataError(f"{folder}: --sequence needs a folder of frames")
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not frames:
        raise DataError(f"{folder}: no frames ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return frames


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def video_frames(path: Path) -> tuple[Iterator[tuple[str, np.ndarray]], float]:
    """(the RGB frames of a video file, named by their index from 000000, its frame rate); DataError naming the
    file when OpenCV cannot open it or decodes no frame of it."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: cannot open this video (not a video, or a codec OpenCV's FFmpeg lacks)")
    rate = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)  # what the container says; 0 where it does not
    ok, first = capture.read()
    if not ok:
        capture.release()
        raise DataError(f"{path}: no frame of this video could be decoded")

    def frames() -> Iterator[tuple[str, np.ndarray]]:
        index, bgr = 0, first
        try:
            while bgr is not None:
                yield f"{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                ok, bgr = capture.read()
                index += 1
                if not ok:
                    bgr = None
            if index < count:
                raise DataError(f"{path}: frame {index} of the {count} the video holds cannot be decoded")
        finally:
            capture.release()

    return frames(), float(rate)


def folder_frames(paths: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """The frames of a folder, by stem; a frame that cannot be decoded raises DataError naming it."""
    for path in paths:
        yield path.stem, read_image(path)


class Smoother:
    """The mean of a frame's probabilities and the previous `previous` frames' (0: the frame's own)."""

    def __init__(self, previous: int):
        self.recent: collections.deque[np.ndarray] = collections.deque(maxlen=previous + 1)

    def __call__(self, probability: np.ndarray) -> np.ndarray:
        self.recent.append(probability)
        return self.recent[0] if len(self.recent) == 1 else np.mean(self.recent, axis=0)


def predict_stream(predictor, frames: Iterator[tuple[str, np.ndarray]], out_video: Path, masks: Path,
                   rate: float = DEFAULT_FPS, smooth: int = 0, threshold: float = MASK_THRESHOLD,
                   tta: str = "none") -> StreamResult:
    """Runs `predictor` (a `polyp.predict.Predictor`) on each frame in turn, batch 1; writes `masks/<name>.png`
    (0/255) per frame and the overlay video `out_video` at `rate` frames per second.

    A frame of another size than the first, or one that cannot be decoded, stops the stream with `problem` set;
    the frames before it stay written (the video is closed and kept)."""
    if out_video.suffix.lower() not in WRITTEN_SUFFIXES:
        raise DataError(f"{out_video}: the overlay video is written as {' or '.join(WRITTEN_SUFFIXES)}")
    masks.mkdir(parents=True, exist_ok=True)
    out_video.parent.mkdir(parents=True, exist_ok=True)
    smoother, writer, size = Smoother(smooth), None, None
    done, model_seconds, problem = 0, 0.0, ""
    started = time.perf_counter()
    try:
        while True:
            try:
                name, image = next(frames)
            except StopIteration:
                break
            except DataError as error:
                problem = f"{error}: stopped after {done} frames (they are written)"
                break
            height, width = image.shape[:2]
            if size is None:
                size = (width, height)
                writer = cv2.VideoWriter(str(out_video), cv2.VideoWriter_fourcc(*WRITTEN_SUFFIXES[out_video.suffix.lower()]),
                                         rate, size)
                if not writer.isOpened():
                    raise DataError(f"{out_video}: OpenCV cannot write this video file")
            elif (width, height) != size:
                problem = (f"frame {done} ({name}) is {width}x{height}, the stream's first frame {size[0]}x{size[1]}: "
                           f"stopped after {done} frames (they are written)")
                break
            model_started = time.perf_counter()
            probability = predictor.probabilities([image], tta)[0]
            model_seconds += time.perf_counter() - model_started
            mask = binary_mask(smoother(probability), threshold)
            write_image(masks / f"{name}.png", mask * 255)
            writer.write(cv2.cvtColor(overlay(image, mask), cv2.COLOR_RGB2BGR))
            done += 1
    finally:
        if writer is not None:
            writer.release()
    return StreamResult(done, time.perf_counter() - started, model_seconds, problem)
