"""The images conversion reads: --val folders mapped onto the bundle's classes by name, crops as the device makes them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cytoedge.convert.errors import ConvertError
from cytoedge.convert.samples import folder_images, load_crops, split_images, stratified
from cytoedge.edge_app.preprocess import PreprocessSpec, preprocess

CLASSES = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]


def write_tree(root, folders: dict[str, int]):
    rng = np.random.default_rng(1)
    for folder, n in folders.items():
        (root / folder).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / folder / f"{i:03d}_01.png"), rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))


def test_val_folder_classes_map_onto_the_bundle_order(tmp_path):
    # ImageFolder names in another spelling and order than the bundle's classes
    write_tree(tmp_path, {"Dyskeratotic": 2, "im_Parabasal": 3})
    images = folder_images(tmp_path, CLASSES)
    got = {p.parent.name: int(label) for p, label in zip(images.paths, images.labels)}
    assert got == {"Dyskeratotic": 4, "im_Parabasal": 1}
    assert images.counts(5) == [0, 3, 0, 0, 2]


def test_crops_are_preprocess_without_normalisation(tmp_path):
    write_tree(tmp_path, {"parabasal": 3})
    spec = PreprocessSpec(size=16, resize=20)
    images = folder_images(tmp_path, CLASSES)
    crops = load_crops(images, spec)
    assert crops.dtype == np.uint8 and crops.shape == (3, 16, 16, 3)
    want = preprocess(cv2.imread(str(images.paths[0])), spec, normalize=False)
    np.testing.assert_array_equal(crops[0], want)


def test_unreadable_image_is_a_one_line_error(tmp_path):
    write_tree(tmp_path, {"parabasal": 1})
    images = folder_images(tmp_path, CLASSES)
    images.paths[0].write_bytes(b"")
    with pytest.raises(ConvertError, match="empty or not decodable"):
        load_crops(images, PreprocessSpec(size=16, resize=16))


def test_split_without_validation_images_says_what_to_do(tmp_path):
    with pytest.raises(ConvertError, match="no validation images: pass --val DATA"):
        split_images({"root": str(tmp_path), "train": [["a.png", 0, "g"]], "val": []}, "val", 5)
    with pytest.raises(ConvertError, match="class indices outside 0..4"):
        split_images({"root": str(tmp_path), "train": [["a.png", 7, "g"]]}, "train", 5)


def test_stratified_is_deterministic_and_balanced(tmp_path):
    write_tree(tmp_path, {c: 6 for c in CLASSES})
    images = folder_images(tmp_path, CLASSES)
    a, b = stratified(images, 10, 5, seed=3), stratified(images, 10, 5, seed=3)
    assert a.paths == b.paths and a.counts(5) == [2] * 5
