"""The reader takes the download's tree as it is (doubled folders, no prefix, ImageFolder) and says what it skipped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cytoedge.train.data.sipakmed import scan_dataset
from cytoedge.train.errors import DataError


def _img(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((20, 24, 3), value, np.uint8))


def _sipakmed_class(root: Path, folder: str, frames: int = 2, per_frame: int = 2, doubled: bool = False) -> Path:
    d = root / folder / folder if doubled else root / folder
    for f in range(1, frames + 1):
        _img(d / f"{f:03d}.bmp")
        for c in range(1, per_frame + 1):
            (d / f"{f:03d}_cyt{c:02d}.dat").write_text("1,1\n5,1\n5,5\n")
            (d / f"{f:03d}_nuc{c:02d}.dat").write_text("2 2\n3 2\n3 3\n")
            _img(d / "CROPPED" / f"{f:03d}_{c:02d}.bmp", 40 * c)
    return d


def test_download_tree_doubled_and_prefixless_folders(tmp_path):
    _sipakmed_class(tmp_path, "im_Dyskeratotic", doubled=True)
    _sipakmed_class(tmp_path, "im_Superficial-Intermediate")
    _sipakmed_class(tmp_path, "Parabasal", frames=3)
    (tmp_path / "fields").mkdir()
    _img(tmp_path / "fields" / "field_001.png")
    idx = scan_dataset(tmp_path)
    assert idx.layout == "sipakmed"
    # SIPaKMeD's own order, whatever the folder order on disk
    assert idx.class_names == ["superficial_intermediate", "parabasal", "dyskeratotic"]
    assert idx.counts() == {"superficial_intermediate": 4, "parabasal": 6, "dyskeratotic": 4}
    assert idx.group_counts() == {"superficial_intermediate": 2, "parabasal": 3, "dyskeratotic": 2}
    s = next(s for s in idx.samples if s.path.name == "002_01.bmp" and "Parabasal" in str(s.path))
    assert s.group == "parabasal/002" and idx.class_names[s.label] == "parabasal"
    assert [p.name for p in idx.ignored_dirs] == ["fields"]
    assert len(idx.frames) == 7 and all(len(f.cytoplasm) == 2 and len(f.nuclei) == 2 for f in idx.frames)
    assert "14 images in 3 classes" in idx.summary() and "ignored 1 folder" in idx.summary()


def test_unreadable_and_empty_images_are_skipped_and_counted(tmp_path):
    d = _sipakmed_class(tmp_path, "im_Koilocytotic")
    _sipakmed_class(tmp_path, "im_Metaplastic")
    (d / "CROPPED" / "009_01.bmp").write_bytes(b"")
    (d / "CROPPED" / "009_02.bmp").write_bytes(b"BM this is not a bitmap")
    idx = scan_dataset(tmp_path)
    assert len(idx.samples) == 8
    assert sorted(r for _, r in idx.skipped) == ["not a decodable image", "zero bytes"]
    assert "skipped 2 unreadable or empty image(s)" in idx.summary()


def test_imagefolder_tree_of_any_class_names(tmp_path):
    for cls in ("Cells A", "cells-b"):
        for i in range(3):
            _img(tmp_path / cls / "sub" / f"{i:03d}_0{i}.png")
        _img(tmp_path / cls / "loose.jpg")
    idx = scan_dataset(tmp_path)
    assert idx.layout == "imagefolder"
    assert idx.class_names == ["cells_a", "cells_b"]
    assert idx.counts() == {"cells_a": 4, "cells_b": 4}
    assert {s.group for s in idx.samples if s.label == 0} == {"cells_a/000", "cells_a/001", "cells_a/002", "cells_a/loose"}


def test_missing_folder_empty_class_and_no_images_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        scan_dataset(tmp_path / "empty_root")
    _sipakmed_class(tmp_path / "t", "im_Parabasal")
    (tmp_path / "t" / "im_Metaplastic" / "CROPPED").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class 'metaplastic' has no readable images in .*im_Metaplastic/CROPPED"):
        scan_dataset(tmp_path / "t")
    (tmp_path / "f" / "a").mkdir(parents=True)
    (tmp_path / "f" / "a" / "x.png").write_bytes(b"")
    with pytest.raises(DataError) as exc:
        scan_dataset(tmp_path / "f")
    assert "\n" not in str(exc.value)
