"""polyp.predict on a stream: a video file or a folder of ordered frames, smoothing, and broken streams."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import polyp.predict
from polyp.checkpoint import save_checkpoint
from polyp.config import TrainConfig
from polyp.data.synthetic import make_sample
from polyp.models import build_model
from polyp.video import Smoother, frame_paths


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    cfg = TrainConfig(arch="linknet", encoder="mobilenet_v2", encoder_depth=3, image_size=32)
    torch.manual_seed(0)
    return save_checkpoint(build_model(cfg).eval(), cfg, tmp_path_factory.mktemp("model") / "checkpoint")


def write_clip(path: Path, count: int, size: int = 48) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size, size))
    for seed in range(count):
        writer.write(cv2.cvtColor(make_sample(seed=seed, size=size)[0], cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def frames_of(path: Path) -> int:
    capture, count = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def predict(*args: str) -> int:
    return polyp.predict.main([*args, "--runtime", "torch"])


def test_a_clip_gives_the_overlay_video_a_mask_per_frame_and_the_frame_rate(checkpoint, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4", 6)
    out = tmp_path / "out" / "overlay.mp4"
    assert predict("--model", str(checkpoint), "--input", str(clip), "--out", str(out), "--smooth", "2") == 0
    printed = capsys.readouterr().out
    assert frames_of(out) == 6
    masks = sorted((tmp_path / "out" / "overlay_masks").iterdir())
    assert [p.name for p in masks] == [f"{i:06d}.png" for i in range(6)]
    assert cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).shape == (48, 48)
    assert f"wrote {out} (6 frames at 10 per second)" in printed
    assert "frames per second in all (the model alone" in printed and "previous 2" in printed


def test_a_folder_of_frames_goes_in_natural_order(checkpoint, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in (1, 2, 10):
        cv2.imwrite(str(folder / f"{index}.jpg"), make_sample(seed=index, size=40)[0])
    assert [p.name for p in frame_paths(folder)] == ["1.jpg", "2.jpg", "10.jpg"]
    out = tmp_path / "seq.mp4"
    assert predict("--model", str(checkpoint), "--input", str(folder), "--sequence", "--out", str(out)) == 0
    assert frames_of(out) == 3 and "(3 frames at 25 per second)" in capsys.readouterr().out


def test_a_frame_of_another_size_stops_the_stream_and_keeps_the_frames_before_it(checkpoint, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for index, size in enumerate((40, 40, 40, 56, 40)):
        cv2.imwrite(str(folder / f"frame{index}.png"), make_sample(seed=index, size=size)[0])
    out = tmp_path / "mixed.mp4"
    assert predict("--model", str(checkpoint), "--input", str(folder), "--sequence", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "frame 3 (frame3) is 56x56, the stream's first frame 40x40: stopped after 3 frames" in err
    assert frames_of(out) == 3 and len(list((tmp_path / "mixed_masks").iterdir())) == 3


def test_a_broken_frame_or_video_is_named(checkpoint, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), make_sample(seed=1, size=40)[0])
    (folder / "2.png").write_bytes(b"not a png")
    assert predict("--model", str(checkpoint), "--input", str(folder), "--sequence", "--out", str(tmp_path / "b.mp4")) == 2
    assert "2.png: cannot decode image" in capsys.readouterr().err and frames_of(tmp_path / "b.mp4") == 1

    fake = tmp_path / "clip.mp4"
    fake.write_text("this is no video")
    assert predict("--model", str(checkpoint), "--input", str(fake), "--out", str(tmp_path / "c.mp4")) == 2
    assert f"{fake}: cannot open this video" in capsys.readouterr().err
    assert predict("--model", str(checkpoint), "--input", str(write_clip(tmp_path / "ok.mp4", 2)), "--out",
                   str(tmp_path / "masks-folder")) == 2
    assert "the overlay video is written as .mp4 or .avi" in capsys.readouterr().err


def test_smoothing_averages_a_frame_with_the_previous_k():
    smooth = Smoother(2)
    frames = [np.full((2, 2), value, np.float32) for value in (0.0, 0.3, 0.6, 0.9)]
    assert [float(smooth(f)[0, 0]) for f in frames] == pytest.approx([0.0, 0.15, 0.3, 0.6])
    assert float(Smoother(0)(frames[3])[0, 0]) == pytest.approx(0.9)


def test_a_video_cut_short_is_named_and_its_decoded_frames_kept(checkpoint, tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 48))
    for seed in range(8):
        writer.write(cv2.cvtColor(make_sample(seed=seed, size=48)[0], cv2.COLOR_RGB2BGR))
    writer.release()
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) * 3 // 4])  # the container still says 8 frames
    out = tmp_path / "cut.mp4"
    assert predict("--model", str(checkpoint), "--input", str(clip), "--out", str(out)) == 2
    err = capsys.readouterr().err
    decoded = frames_of(out)
    assert 0 < decoded < 8 and f"frame {decoded} of the 8 the video holds cannot be decoded" in err


def test_stream_settings_that_cannot_work_are_refused_before_anything_is_written(checkpoint, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4", 2)
    assert predict("--model", str(checkpoint), "--input", str(clip), "--out", str(clip)) == 2
    assert "is the input" in capsys.readouterr().err and frames_of(clip) == 2
    assert predict("--model", str(checkpoint), "--input", str(clip), "--out", str(tmp_path / "o.mp4"), "--fps", "0") == 2
    assert "--fps: 0 must be above 0" in capsys.readouterr().err and not (tmp_path / "o_masks").exists()
    folder = tmp_path / "empty-frames"
    folder.mkdir()
    (folder / "1.png").write_bytes(b"broken")
    assert predict("--model", str(checkpoint), "--input", str(folder), "--sequence", "--out", str(tmp_path / "e.mp4")) == 2
    err = capsys.readouterr()
    assert "nothing written" in err.err and "wrote" not in err.out
