"""Prediction with a checkpoint folder: masks at the original size, overlays, and Dice/IoU against truth.

Example:
    python -m polyp.predict --model runs/export/best --input photo.jpg --out predictions/
    python -m polyp.predict --model runs/export/best --input images/ --masks masks/ --out predictions/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from polyp.checkpoint import CheckpointInfo, load_checkpoint
from polyp.data import IMAGENET_MEAN, IMAGENET_STD, DataError, read_image, read_mask
from polyp.data.folder import IMAGE_SUFFIXES, MASK_NAME_SUFFIXES
from polyp.data.loading import check_one_convention
from polyp.data.masks import MaskConvention, detect, read_raw_mask
from polyp.errors import PolypError
from polyp.gradcam import write_gradcams
from polyp.images import MASK_THRESHOLD, binary_mask, overlay, write_image
from polyp.io import make_folder
from polyp.metrics import dice_iou
from polyp.onnx_export import INPUT_NAME, ONNX_FILE, OUTPUT_NAME, onnx_graph, onnx_session
from polyp.runtime import Normalizer, autocast, resolve_device, resolve_precision
from polyp.timing import median_ms
from polyp.tta import TTA_MODES, symmetries
from polyp.video import DEFAULT_FPS, folder_frames, frame_paths, is_video, predict_stream, video_frames

RUNTIMES = ("auto", "torch", "onnx")  # --runtime of polyp.predict and polyp.serve
DEFAULT_RUNTIME = "auto"  # neither is faster for every model on a CPU (benchmarks/runtime.py): time both, keep the faster
CHOICE_RUNS = 5  # timed frames per runtime when "auto" chooses (after 2 untimed ones)


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    """`--runtime`, as polyp.predict and polyp.serve take it."""
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, choices=RUNTIMES,
                        help=f"torch; onnx: ONNX Runtime on the CPU (the folder's model.onnx, else exported in "
                        f"memory); auto: on the CPU both timed on one frame, the faster kept (default {DEFAULT_RUNTIME})")


class Predictor:
    """Runs a loaded model on RGB uint8 images of any size and returns probability maps at that size.

    Like the trainer, it runs channels-last with bf16 autocast where the device supports it
    (`precision="auto"`); `precision="fp32", channels_last=False` is the plain float32 forward pass.
    """

    runtime = "torch"
    runtime_note = ""  # why this runtime, when from_folder's "auto" chose it

    def __init__(self, model: nn.Module, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, device: str = "cpu",
                 precision: str = "auto", channels_last: bool = True):
        self.device = resolve_device(device)
        model = model.to(self.device).eval()
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.image_size = image_size
        self.dtype = resolve_precision(precision, self.device)
        self.normalize = Normalizer(self.device, channels_last=channels_last, mean=mean, std=std)

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "cpu", precision: str = "auto",
                    runtime: str = "torch") -> tuple[Predictor, CheckpointInfo]:
        """Loads a checkpoint folder (JSON + safetensors only).

        `runtime`: "torch"; "onnx", ONNX Runtime on the CPU (`OnnxPredictor`: the folder's model.onnx, or the
        model exported in memory when it has none); "auto", on the CPU both timed on a frame at the input size
        and the faster kept (`runtime_note` says which and why), elsewhere "torch".
        """
        if runtime not in RUNTIMES:
            raise PolypError(f"--runtime: {runtime!r} is not one of {', '.join(RUNTIMES)}")
        on_cpu = resolve_device(device).type == "cpu"
        if runtime == "onnx" and not on_cpu:
            raise PolypError(f"--runtime onnx runs on the CPU, not on {device}: use --runtime torch with --device {device}")
        model, info = load_checkpoint(folder)
        plain = cls(model, info.image_size, info.mean, info.std, device, precision)
        if runtime == "torch" or (runtime == "auto" and not on_cpu):
            return plain, info
        if runtime == "onnx":
            return OnnxPredictor(model, info.image_size, info.mean, info.std, Path(folder) / ONNX_FILE), info
        try:
            onnx = OnnxPredictor(model, info.image_size, info.mean, info.std, Path(folder) / ONNX_FILE)
        except Exception as error:  # noqa: BLE001 - any export or ONNX Runtime failure: PyTorch still predicts
            plain.runtime_note = f"runtime torch (--runtime auto: ONNX Runtime cannot run this model: {error})"
            return plain, info
        times = {name: predictor.frame_ms() for name, predictor in (("torch", plain), ("onnx", onnx))}
        chosen = onnx if times["onnx"] < times["torch"] else plain
        chosen.runtime_note = (f"runtime {chosen.runtime} (--runtime auto: {times['torch']:.1f} ms per frame with "
                               f"PyTorch, {times['onnx']:.1f} ms with ONNX Runtime on this machine)")
        return chosen, info

    def frame_ms(self, runs: int = CHOICE_RUNS) -> float:
        """Median milliseconds of one frame (batch 1) at the input size."""
        frame = torch.zeros(1, 3, self.image_size, self.image_size, dtype=torch.uint8)
        return median_ms(lambda: self.logits(frame), warmup=2, repeats=runs)

    def resized(self, images: list[np.ndarray]) -> torch.Tensor:
        """uint8 batch (N,3,S,S) of RGB uint8 images resized to the model's input size."""
        size = self.image_size
        small = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
        return torch.from_numpy(small).permute(0, 3, 1, 2)

    def batch_input(self, images: list[np.ndarray]) -> torch.Tensor:
        """Resized, normalised float input tensor (N,3,S,S) for RGB uint8 images."""
        return self.normalize(self.resized(images))

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 logits (N,1,S,S) of a uint8 batch already at the input size."""
        with torch.inference_mode(), autocast(self.device, self.dtype):
            return self.model(self.normalize(batch)).float()

    def probabilities(self, images: list[np.ndarray], tta: str = "none") -> list[np.ndarray]:
        """Polyp probability (float32 0..1) per pixel of each image, at the image's own size.

        Args:
            images: RGB uint8 images of any sizes.
            tta: "none", "flip" (mean over the image and its two flips) or "d4" (the 8 flips and rotations).
        """
        passes = self.pass_probabilities(images, tta)
        return [sum(maps[index] for maps in passes) / len(passes) for index in range(len(images))]

    def pass_probabilities(self, images: list[np.ndarray], tta: str) -> list[list[np.ndarray]]:
        """Each pass's probability maps (turned back to each image's own orientation and size), in the order of
        `polyp.tta.symmetries(tta)`: `probabilities` is their mean."""
        return [[inverse(probability) for probability in self._probabilities([forward(im) for im in images])]
                for forward, inverse in symmetries(tta)]

    def _probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        probs = torch.sigmoid(self.logits(self.resized(images)))[:, 0].cpu().numpy()
        return [cv2.resize(p, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR) for p, im in zip(probs, images, strict=True)]


class OnnxPredictor(Predictor):
    """A Predictor whose forward pass is the exported ONNX graph run by ONNX Runtime on the CPU, with the same
    pre-processing (resize, the checkpoint's mean and std); the PyTorch model stays for Grad-CAM."""

    runtime = "onnx"

    def __init__(self, model: nn.Module, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 graph: str | Path | None = None, threads: int = 0):
        """`graph`: a .onnx file of `model` (as `search.export --onnx` writes it); None or a missing file: `model`
        is exported in memory."""
        super().__init__(model, image_size, mean, std, "cpu", precision="fp32", channels_last=False)
        found = graph is not None and Path(graph).is_file()
        self.graph = str(graph) if found else "exported in memory"
        self.session = onnx_session(graph if found else onnx_graph(model, image_size), threads)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 logits (N,1,S,S) of a uint8 batch already at the input size, from ONNX Runtime."""
        inputs = np.ascontiguousarray(self.normalize(batch).numpy(), dtype=np.float32)
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: inputs})
        return torch.from_numpy(logits)


def _inputs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return files
        raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    raise DataError(f"{path}: no such file or folder")


def _find_mask(masks: Path, stem: str) -> Path | None:
    for suffix in ("", *MASK_NAME_SUFFIXES):
        for extension in IMAGE_SUFFIXES:
            candidate = masks / f"{stem}{suffix}{extension}"
            if candidate.is_file():
                return candidate
    return None


def truth_paths(masks: Path, inputs: list[Path]) -> list[Path]:
    """The true mask of each input in the `masks` folder; raises DataError naming every image without one."""
    found = [_find_mask(masks, path.stem) for path in inputs]
    missing = [path.name for path, mask in zip(inputs, found, strict=True) if mask is None]
    if missing:
        raise DataError(f"{masks}: no mask for {', '.join(missing[:10])}{' and more' if len(missing) > 10 else ''}")
    return found


def truth_convention(masks: Path, inputs: list[Path]) -> MaskConvention:
    """The mask convention (0/1, 0/255, 0/65535, ...) of the true masks of `inputs`, from their largest values."""
    paths = truth_paths(masks, inputs)
    largest = [int(read_raw_mask(path).max()) for path in paths]
    check_one_convention(masks, [path.name for path in paths], largest)
    return detect(largest)


def predict_files(predictor: Predictor, inputs: list[Path], out: Path, masks: Path | None = None,
                  batch_size: int = 8, convention: MaskConvention | None = None, tta: str = "none",
                  threshold: float = MASK_THRESHOLD) -> list[dict]:
    """Writes `<stem>_mask.png` and `<stem>_overlay.png` per input (polyp where the probability is at least
    `threshold`); with `masks`, scores each image.

    Images go through the model `batch_size` at a time. The true masks are binarised by `convention`, by
    default the one `truth_convention` detects over the masks of all `inputs`.
    """
    truths: list[Path | None] = [None] * len(inputs)
    if masks is not None:
        truths = list(truth_paths(masks, inputs))
        convention = convention or truth_convention(masks, inputs)
    rows = []
    step = max(1, batch_size)
    for start in range(0, len(inputs), step):
        chunk = inputs[start:start + step]
        images = [read_image(path) for path in chunk]
        for path, truth, image, probability in zip(chunk, truths[start:start + step], images,
                                                   predictor.probabilities(images, tta), strict=True):
            rows.append(_write_one(path, image, binary_mask(probability, threshold), out, truth, convention))
    return rows


def _write_one(path: Path, image: np.ndarray, mask: np.ndarray, out: Path, truth_path: Path | None,
               convention: MaskConvention | None) -> dict:
    """Writes one image's mask and overlay; scores the mask against its true mask when given."""
    write_image(out / f"{path.stem}_mask.png", mask * 255)
    write_image(out / f"{path.stem}_overlay.png", overlay(image, mask))
    row = {"stem": path.stem}
    if truth_path is not None:
        truth = read_mask(truth_path, convention)
        if truth.shape != mask.shape:
            raise DataError(f"{truth_path}: mask size {truth.shape[::-1]} differs from image {mask.shape[::-1]}")
        row["dice"], row["iou"] = dice_iou(torch.from_numpy(mask), torch.from_numpy(truth))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Predict polyp masks with an exported checkpoint folder.")
    parser.add_argument("--model", required=True, help="checkpoint folder (config.json + model.safetensors + training.json)")
    parser.add_argument("--input", required=True, help="an image file or a folder of images; a video file, or with "
                        "--sequence a folder of ordered frames")
    parser.add_argument("--out", required=True, help="folder for <stem>_mask.png and <stem>_overlay.png; for a video "
                        "or --sequence the overlay video (.mp4 or .avi), its masks in <out>_masks/")
    parser.add_argument("--masks", help="folder of true masks: print Dice and IoU per image and their means")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--gradcam", action="store_true", help="also write <stem>_gradcam.png heat maps")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="auto: bf16 autocast where the device supports it (as in training), else float32")
    add_runtime_option(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--sequence", action="store_true",
                        help="--input is a folder of ordered frames of one video: predicted one at a time, written "
                        "as the overlay video --out (.mp4 or .avi) and its masks")
    parser.add_argument("--smooth", type=int, default=0, metavar="K",
                        help="video: average each frame's probabilities with the previous K frames' (default 0)")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS,
                        help=f"--sequence: frames per second of the written video (default {DEFAULT_FPS:g}; a video "
                        "file keeps its own)")
    parser.add_argument("--tta", default="none", choices=TTA_MODES,
                        help="test-time augmentation: none, flip (3 passes) or d4 (8 flips and rotations)")
    parser.add_argument("--threshold", type=float, default=MASK_THRESHOLD,
                        help=f"probability at and above which a pixel is polyp (default {MASK_THRESHOLD:g}; search.auto "
                        "chooses one on validation)")
    args = parser.parse_args(argv)
    stream = args.sequence or is_video(Path(args.input))
    if stream and (args.masks or args.gradcam):
        print("error: --masks and --gradcam take still images; a video or --sequence writes overlays and masks",
              file=sys.stderr)
        return 2
    if args.smooth < 0 or args.fps <= 0 or not 0 < args.threshold < 1:
        problem = (f"--smooth: {args.smooth} is negative (0 = no smoothing)" if args.smooth < 0 else
                   f"--fps: {args.fps:g} must be above 0" if args.fps <= 0 else
                   f"--threshold: {args.threshold:g} must be between 0 and 1")
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if stream and Path(args.out).resolve() == Path(args.input).resolve():
        print(f"error: --out {args.out} is the input: the overlay video needs a file of its own", file=sys.stderr)
        return 2
    if not stream and args.smooth:
        print("note: --smooth averages over the frames of a video or a --sequence; still images are not smoothed",
              file=sys.stderr)
    try:
        predictor, _ = Predictor.from_folder(args.model, args.device, args.precision, args.runtime)
        if predictor.runtime_note:
            print(predictor.runtime_note)
        if stream:
            return _predict_stream(predictor, args)
        inputs = _inputs(Path(args.input))
        convention = truth_convention(Path(args.masks), inputs) if args.masks else None
        out = make_folder(args.out, "--out")
        rows = predict_files(predictor, inputs, out, Path(args.masks) if args.masks else None, args.batch_size,
                             convention, args.tta, args.threshold)
        if args.gradcam:
            write_gradcams(predictor, inputs, out)
    except PolypError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in rows:
        scores = f"  dice {row['dice']:.4f}  iou {row['iou']:.4f}" if "dice" in row else ""
        print(f"{row['stem']}{scores}")
    if args.masks:
        print(f"true masks in {args.masks}: {convention}")
        print(f"mean over {len(rows)} images: mdice {np.mean([r['dice'] for r in rows]):.4f}  "
              f"miou {np.mean([r['iou'] for r in rows]):.4f}")
    print(f"wrote {(3 if args.gradcam else 2) * len(rows)} files to {args.out}")
    return 0


def _predict_stream(predictor: Predictor, args: argparse.Namespace) -> int:
    """polyp.predict on a video file or (--sequence) a folder of frames: the overlay video --out and
    `<out>_masks/`."""
    source, out = Path(args.input), Path(args.out)
    if args.sequence:
        frames, rate = folder_frames(frame_paths(source)), args.fps
    else:
        frames, rate = video_frames(source)
    masks = out.with_name(f"{out.stem}_masks")
    result = predict_stream(predictor, frames, out, masks, rate, args.smooth, threshold=args.threshold, tta=args.tta)
    smoothing = f", probabilities averaged over each frame and the previous {args.smooth}" if args.smooth else ""
    if result.frames == 0:
        print(f"error: {source}: {result.problem}; nothing written", file=sys.stderr)
        return 2
    print(f"wrote {out} ({result.frames} frames at {rate:g} per second) and {result.frames} masks to {masks}/")
    print(f"{result.fps:.1f} frames per second in all (the model alone {result.model_fps:.1f}, {predictor.runtime}"
          f"{smoothing})")
    if result.problem:
        print(f"error: {source}: {result.problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
