"""Data: pairing, checking every file at once, mask conventions, splits, the decode cache, augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import polyp.data.loading
from polyp.config import AUGMENTS
from polyp.data import (
    DataError,
    SegmentationDataset,
    Split,
    find_pairs,
    load_images,
    make_split,
    prepare_data,
    read_mask,
    write_synthetic,
)
from polyp.data.loading import content_key
from polyp.data.masks import MaskConvention
from polyp.data.synthetic import make_sample


def write_image(path: Path, height: int = 16, width: int = 16, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return path


def write_mask(path: Path, height: int = 16, width: int = 16, values: tuple[int, int] = (0, 255),
               dtype: type = np.uint8) -> Path:
    """A mask whose left half is values[0] and right half values[1]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.full((height, width), values[0], dtype)
    mask[:, width // 2:] = values[1]
    assert cv2.imwrite(str(path), mask)
    return path


def test_find_pairs_matches_mask_name_styles(tmp_path):
    write_image(tmp_path / "images" / "a.jpg")
    write_image(tmp_path / "images" / "b.jpg")
    write_image(tmp_path / "images" / "c.png")
    write_mask(tmp_path / "masks" / "a.png")
    write_mask(tmp_path / "masks" / "b_mask.png")
    write_mask(tmp_path / "masks" / "c_segmentation.jpg")
    (tmp_path / "images" / ".DS_Store").write_text("ignored")

    pairs = find_pairs(tmp_path)

    assert [(p.stem, p.image.name, p.mask.name) for p in pairs] == [
        ("a", "a.jpg", "a.png"), ("b", "b.jpg", "b_mask.png"), ("c", "c.png", "c_segmentation.jpg"),
    ]


def test_every_problem_is_named_in_one_error(tmp_path):
    for stem in ("good", "corrupt", "wrongsize"):
        write_mask(tmp_path / "masks" / f"{stem}.png")
    write_image(tmp_path / "images" / "good.jpg")
    write_image(tmp_path / "images" / "wrongsize.jpg", height=20, width=24)
    (tmp_path / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8 these are not jpeg bytes")
    write_image(tmp_path / "images" / "lonely.jpg")
    write_mask(tmp_path / "masks" / "orphan_mask.png")
    (tmp_path / "images" / "notes.txt").write_text("patient notes")

    with pytest.raises(DataError) as raised:
        load_images(tmp_path, 16)

    message = str(raised.value)
    for name in ("lonely.jpg", "orphan_mask.png", "notes.txt", "corrupt.jpg", "wrongsize.png"):
        assert name in message, f"{name} missing from: {message}"
    assert "good.jpg" not in message
    assert "24x20" in message  # the size mismatch says both sizes


def test_find_pairs_lists_pairing_problems_together(tmp_path):
    write_image(tmp_path / "images" / "lonely.jpg")
    write_mask(tmp_path / "masks" / "orphan_mask.png")
    (tmp_path / "masks" / "readme.md").write_text("masks")

    with pytest.raises(DataError, match="3 problem") as raised:
        find_pairs(tmp_path)
    assert all(name in str(raised.value) for name in ("lonely.jpg", "orphan_mask.png", "readme.md"))


def test_empty_and_missing_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    (tmp_path / "half" / "images").mkdir(parents=True)

    with pytest.raises(DataError, match="empty"):
        find_pairs(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        find_pairs(tmp_path / "nowhere")
    with pytest.raises(DataError, match="missing sub-folder.*masks"):
        find_pairs(tmp_path / "half")


def test_0_255_masks_are_binarised_at_128(tmp_path):
    # JPEG masks hold noisy greys around the edge: 120 is background, 140 is polyp.
    path = write_mask(tmp_path / "mask.png", values=(120, 140))
    edge = write_mask(tmp_path / "edge.png", values=(127, 128))
    zero_255 = MaskConvention(255)

    mask = read_mask(path, zero_255)

    assert mask.dtype == np.uint8
    assert (mask[:, :8] == 0).all() and (mask[:, 8:] == 1).all()
    assert read_mask(edge, zero_255)[:, :8].max() == 0 and read_mask(edge, zero_255)[:, 8:].min() == 1
    assert (zero_255.name, zero_255.threshold) == ("0/255", 128)


@pytest.mark.parametrize(("values", "dtype"), [((0, 1), np.uint8), ((0, 255), np.uint8), ((0, 65535), np.uint16)])
def test_read_mask_alone_detects_the_convention_from_its_largest_value(tmp_path, values, dtype):
    path = write_mask(tmp_path / "mask.png", values=values, dtype=dtype)

    mask = read_mask(path)

    assert mask.dtype == np.uint8
    assert (mask[:, :8] == 0).all() and (mask[:, 8:] == 1).all()


def write_folder(root: Path, masks: dict[str, np.ndarray], suffix: str = ".png") -> Path:
    """A data folder: one grey image per mask, named by the keys, masks written as given in `suffix` format."""
    for stem, mask in masks.items():
        write_image(root / "images" / f"{stem}.jpg", height=mask.shape[0], width=mask.shape[1])
        (root / "masks").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / "masks" / f"{stem}{suffix}"), mask)
    return root


def half_mask(value: int, dtype: type = np.uint8, size: int = 16) -> np.ndarray:
    """0 on the left half, `value` on the right half."""
    mask = np.zeros((size, size), dtype)
    mask[:, size // 2:] = value
    return mask


@pytest.mark.parametrize(("suffix", "largest", "dtype", "name", "threshold"), [
    (".png", 1, np.uint8, "0/1", 1),
    (".tif", 1, np.uint8, "0/1", 1),
    (".png", 65535, np.uint16, "0/65535", 32768),
    (".tif", 65535, np.uint16, "0/65535", 32768),
    (".png", 255, np.uint8, "0/255", 128),
    (".png", 38, np.uint8, "0/38", 19),  # e.g. a colour mask read as grey
])
def test_a_data_set_decides_its_mask_convention_from_the_values_found(tmp_path, suffix, largest, dtype, name,
                                                                       threshold):
    write_folder(tmp_path, {f"p{i}": half_mask(largest, dtype) for i in range(3)}, suffix)

    images = load_images(tmp_path, 8)

    assert (images.convention.name, images.convention.threshold) == (name, threshold)
    assert images.masks.dtype == np.uint8
    assert (images.masks[:, :, :4] == 0).all() and (images.masks[:, :, 4:] == 1).all()
    assert images.has_polyp == [True, True, True]


def test_noisy_jpeg_masks_still_binarise_at_128(tmp_path):
    """Kvasir-SEG's masks are JPEGs: 0/255 with greys around the edges, binarised at mid-grey as before."""
    disc = np.zeros((64, 64), np.uint8)
    cv2.circle(disc, (32, 32), 18, 255, -1)
    write_folder(tmp_path, {"a": disc, "b": disc[::-1].copy()}, ".jpg")
    raw = cv2.imread(str(tmp_path / "masks" / "a.jpg"), cv2.IMREAD_GRAYSCALE)
    assert len(np.unique(raw)) > 2, "the JPEG should hold noisy greys"

    images = load_images(tmp_path, 64)

    assert str(images.convention) == "0/255 (threshold 128)"
    assert np.array_equal(images.masks[0], (raw >= 128).astype(np.uint8))


def test_a_data_set_without_any_polyp_pixel_is_refused_naming_the_masks_folder(tmp_path):
    write_folder(tmp_path, {f"p{i}": half_mask(0) for i in range(3)})

    with pytest.raises(DataError) as raised:
        load_images(tmp_path, 8)

    message = str(raised.value)
    assert str(tmp_path / "masks") in message
    assert "no mask has a polyp pixel (3 masks, largest value 0)" in message and "check the masks folder" in message


def test_empty_masks_among_others_are_counted_in_the_data_summary(tmp_path):
    write_folder(tmp_path, {"a": half_mask(1), "b": half_mask(0), "c": half_mask(1), "d": half_mask(0)})

    data = prepare_data(tmp_path, 16, val_fraction=0.25, test_fraction=0.25, cache=False)

    assert data.describe(16) == (f"data {tmp_path}: 4 images, 2 without a polyp; masks 0/1 (threshold 1): "
                                 "2 train, 1 val, 1 test at 16 px")
    has_polyp = dict(zip(data.train.stems + data.val.stems + data.test.stems,
                         data.train.has_polyp + data.val.has_polyp + data.test.has_polyp, strict=True))
    assert has_polyp == {"a": True, "b": False, "c": True, "d": False}
    assert data.notes() == []


def test_a_polyp_too_small_to_survive_resizing_still_counts_as_a_polyp(tmp_path):
    speck = np.zeros((64, 64), np.uint8)
    speck[1, 1] = 255
    write_folder(tmp_path, {"speck": speck, "disc": half_mask(255, size=64)})

    images = load_images(tmp_path, 8)

    assert images.masks[images.stems.index("speck")].max() == 0
    assert images.has_polyp == [True, True]


def test_files_operating_systems_leave_behind_are_skipped_with_a_note(tmp_path):
    write_folder(tmp_path, {f"p{i}": half_mask(255) for i in range(4)})
    leftovers = ["images/._p0.jpg", "images/Thumbs.db", "images/desktop.ini", "masks/.DS_Store", "masks/._p1.png",
                 "masks/DESKTOP.INI"]
    for name in [*leftovers, "masks/.gitkeep"]:
        (tmp_path / name).write_bytes(b"\x00\x05\x16\x07 not an image")

    assert [pair.stem for pair in find_pairs(tmp_path)] == ["p0", "p1", "p2", "p3"]
    data = prepare_data(tmp_path, 16, val_fraction=0.25, test_fraction=0.25, cache=False)

    assert data.train.skipped == sorted(leftovers)
    assert data.notes() == ["note: skipped 6 files that operating systems leave behind: images/._p0.jpg, "
                            "images/Thumbs.db, images/desktop.ini, masks/.DS_Store, masks/._p1.png and 1 more"]


def test_other_files_that_are_not_images_are_still_problems(tmp_path):
    write_folder(tmp_path, {"p0": half_mask(255)})
    (tmp_path / "masks" / "Thumbs.db").write_bytes(b"thumbnails")
    (tmp_path / "masks" / "notes.txt").write_text("annotator's notes")

    with pytest.raises(DataError, match="1 problem") as raised:
        load_images(tmp_path, 8)

    assert "notes.txt: not an image file" in str(raised.value) and "Thumbs.db" not in str(raised.value)


def test_load_images_gives_binary_masks_at_the_asked_size(tmp_path):
    write_image(tmp_path / "images" / "one.jpg", height=30, width=40)
    write_mask(tmp_path / "masks" / "one_mask.png", height=30, width=40, values=(0, 255))

    images = load_images(tmp_path, 32)

    assert images.images.shape == (1, 32, 32, 3) and images.images.dtype == np.uint8
    assert images.masks.shape == (1, 32, 32)
    assert set(np.unique(images.masks)) == {0, 1}
    assert images.sizes == [(30, 40)]


STEMS = [f"s{i:02d}" for i in range(20)]


def test_seeded_split_is_reproducible_disjoint_and_complete():
    split = make_split(STEMS, seed=3, val_fraction=0.2, test_fraction=0.2)

    assert split == make_split(list(reversed(STEMS)), seed=3, val_fraction=0.2, test_fraction=0.2)
    assert make_split(STEMS, seed=4, val_fraction=0.2, test_fraction=0.2) != split
    parts = [set(split.train), set(split.val), set(split.test)]
    assert [len(p) for p in parts] == [12, 4, 4]
    assert set.union(*parts) == set(STEMS)
    assert sum(len(p) for p in parts) == len(STEMS)
    assert split.method == "fractions"


def test_test_list_split_uses_the_listed_stems(tmp_path):
    listing = tmp_path / "test.txt"
    listing.write_text("s01.jpg\ns05\n\ns07.png\n")

    split = make_split(STEMS, seed=0, val_fraction=0.1, test_list=listing)

    assert split.test == ["s01", "s05", "s07"]
    assert split.method == "test-list:test.txt"
    assert len(split.val) == 2
    assert not set(split.test) & (set(split.train) | set(split.val))
    assert set(split.train) | set(split.val) | set(split.test) == set(STEMS)


def test_test_list_with_unknown_stems_is_refused(tmp_path):
    listing = tmp_path / "test.txt"
    listing.write_text("s01\nghost\n")

    with pytest.raises(DataError, match="1 stem.*ghost"):
        make_split(STEMS, test_list=listing)
    with pytest.raises(DataError, match="does not exist"):
        make_split(STEMS, test_list=tmp_path / "absent.txt")


def test_split_manifest_round_trip(tmp_path):
    split = make_split(STEMS, seed=1)

    split.save(tmp_path / "split.json")

    assert Split.load(tmp_path / "split.json") == split
    (tmp_path / "bad.json").write_text('{"train": []}')
    with pytest.raises(DataError, match="not a split manifest"):
        Split.load(tmp_path / "bad.json")


def test_prepare_data_reuses_a_split_and_refuses_unknown_stems(synthetic_dir, synthetic_data):
    again = prepare_data(synthetic_dir, 32, split=synthetic_data.split, cache=False)
    assert again.split == synthetic_data.split
    assert np.array_equal(again.val.images, synthetic_data.val.images)

    foreign = Split(train=["synth_0000", "nobody"], val=[], test=[], seed=0, method="fractions")
    with pytest.raises(DataError, match="nobody"):
        prepare_data(synthetic_dir, 32, split=foreign, cache=False)


def test_decode_cache_returns_identical_arrays_without_decoding(synthetic_dir, tmp_path, monkeypatch):
    first = load_images(synthetic_dir, 32, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("images-*.npz"))) == 1

    def no_decoding(*args):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(polyp.data.loading, "_load_pair", no_decoding)
    second = load_images(synthetic_dir, 32, tmp_path / "cache")

    assert second.stems == first.stems
    assert second.sizes == first.sizes
    assert second.convention == first.convention == MaskConvention(255)
    assert second.has_polyp == first.has_polyp and not all(first.has_polyp)
    assert np.array_equal(second.images, first.images) and np.array_equal(second.masks, first.masks)


def test_cache_key_follows_file_content_and_size(synthetic_dir, tmp_path):
    folder = shutil.copytree(synthetic_dir, tmp_path / "copy")
    before = content_key(find_pairs(folder), 32)
    assert content_key(find_pairs(folder), 64) != before

    write_mask(folder / "masks" / "synth_0003.png", height=32, width=32)

    assert content_key(find_pairs(folder), 32) != before


@pytest.mark.parametrize("strength", AUGMENTS)
def test_augmentation_keeps_shapes_and_binary_masks(synthetic_data, strength):
    dataset = SegmentationDataset(synthetic_data.train, augment=strength, seed=0)

    for index in range(len(dataset)):
        image, mask = dataset[index]
        assert image.shape == (3, 32, 32) and str(image.dtype) == "torch.uint8"
        assert mask.shape == (1, 32, 32)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_no_augmentation_returns_the_decoded_arrays(synthetic_data):
    image, mask = SegmentationDataset(synthetic_data.train, augment="none")[2]

    assert np.array_equal(image.numpy().transpose(1, 2, 0), synthetic_data.train.images[2])
    assert np.array_equal(mask[0].numpy(), synthetic_data.train.masks[2])


def test_unknown_augmentation_is_refused(synthetic_data):
    with pytest.raises(ValueError, match="extreme"):
        SegmentationDataset(synthetic_data.train, augment="extreme")


def test_synthetic_set_is_deterministic_with_and_without_polyps(tmp_path):
    first = write_synthetic(tmp_path / "a", count=16, size=32, seed=0)
    second = write_synthetic(tmp_path / "b", count=16, size=32, seed=0)
    other = write_synthetic(tmp_path / "c", count=16, size=32, seed=1)

    files = sorted(p.relative_to(first) for p in first.rglob("*.*"))
    assert len(files) == 32
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert any((first / f).read_bytes() != (other / f).read_bytes() for f in files)
    masks = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in sorted((first / "masks").iterdir())]
    assert all(set(np.unique(mask)) <= {0, 255} for mask in masks)
    polyp_pixels = [int((mask > 0).sum()) for mask in masks]
    assert 0 in polyp_pixels and max(polyp_pixels) > 0


def test_make_sample_is_a_pure_function_of_its_seed():
    image, mask = make_sample(7, size=32)
    again_image, again_mask = make_sample(7, size=32)

    assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
    assert np.array_equal(image, again_image) and np.array_equal(mask, again_mask)


def test_masks_saved_in_different_conventions_are_refused_naming_them(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image = np.zeros((16, 16, 3), np.uint8)
    for index, (value, dtype) in enumerate([(255, np.uint8), (255, np.uint8), (65535, np.uint16), (0, np.uint8)]):
        mask = np.zeros((16, 16), dtype)
        mask[4:12, 4:12] = value
        cv2.imwrite(str(tmp_path / "images" / f"p{index}.png"), image)
        cv2.imwrite(str(tmp_path / "masks" / f"p{index}.png"), mask)
    with pytest.raises(DataError, match=r"masks: masks are saved in different conventions: 2 8-bit \(0/255\) "
                                        r"\(e\.g\. p0\.png, p1\.png\); 1 16-bit \(0/65535\) \(e\.g\. p2\.png\)"):
        load_images(tmp_path, 16)
