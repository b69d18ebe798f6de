"""The synthetic generator writes SIPaKMeD's tree, with crops cut from real frames and honest outlines."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cytoedge.edge_app.classes import SIPAKMED_CLASSES, SIPAKMED_FOLDERS
from cytoedge.edge_app.clitools import run_cli
from cytoedge.edge_app.outlines import outline_bbox, read_outline
from cytoedge.train.data import synth
from cytoedge.train.data.synth import SynthOptions, generate
from cytoedge.train.data.synth_morphology import PARAMS, class_mean, sample_cell
from cytoedge.train.errors import ConfigError, DataError

PER_CLASS, FRAMES, FIELDS, SIZE = 40, 4, 2, (800, 600)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    summary = generate(SynthOptions(out=out, per_class=PER_CLASS, frames=FRAMES, seed=3, fields=FIELDS,
                                    frame_size=SIZE))
    assert summary.crops == {c: PER_CLASS for c in SIPAKMED_CLASSES}
    return out


def _class_dirs(root: Path) -> dict[str, Path]:
    return {c: root / f"im_{SIPAKMED_FOLDERS[c]}" for c in SIPAKMED_CLASSES}


def _frame_cells(folder: Path, stem: str) -> list[tuple[np.ndarray, np.ndarray]]:
    cyts = sorted(folder.glob(f"{stem}_cyt*.dat"))
    return [(read_outline(c), read_outline(c.with_name(c.name.replace("_cyt", "_nuc")))) for c in cyts]


def test_tree_has_the_sipakmed_layout(tree):
    assert {p.name for p in tree.iterdir()} == {*(d.name for d in _class_dirs(tree).values()), "fields", "synth.json",
                                                "negatives", "ood"}
    for cls, folder in _class_dirs(tree).items():
        frames = sorted(p.name for p in folder.glob("*.bmp"))
        assert frames == [f"{i:03d}.bmp" for i in range(1, FRAMES + 1)]
        crops = sorted((folder / "CROPPED").glob("*.bmp"))
        assert len(crops) == PER_CLASS
        cells = set()
        for frame in frames:
            stem = frame[:-4]
            cyt = sorted(p.name for p in folder.glob(f"{stem}_cyt*.dat"))
            nuc = sorted(p.name for p in folder.glob(f"{stem}_nuc*.dat"))
            assert cyt and [n.replace("_nuc", "_cyt") for n in nuc] == cyt
            cells |= {f"{stem}_{n[-6:-4]}" for n in cyt}
        assert {c.stem for c in crops} == cells  # one crop per outlined cell, NNN_MM <-> NNN_cytMM
        for c in crops:
            assert c.with_name(c.stem + "_cyt.dat").is_file() and c.with_name(c.stem + "_nuc.dat").is_file()
    assert not (tree / "fields" / "CROPPED").exists()


def test_the_reader_takes_the_tree_as_sipakmed(tree):
    from cytoedge.train.data.sipakmed import scan_dataset

    index = scan_dataset(tree)
    assert index.layout == "sipakmed"
    assert index.class_names == list(SIPAKMED_CLASSES)
    assert index.counts() == {c: PER_CLASS for c in SIPAKMED_CLASSES}
    assert index.group_counts() == {c: FRAMES for c in SIPAKMED_CLASSES}
    assert [p.name for p in index.ignored_dirs] == ["fields", "negatives", "ood"]


def test_non_cell_sets_hold_other_kinds_and_seeds_and_are_never_classes(tree, tmp_path):
    from cytoedge.train.data.sipakmed import NONCELL_MARKER, scan_dataset
    from cytoedge.train.data.synth_noncells import KINDS, OOD_SEED_OFFSET, SETS

    metas = {name: json.loads((tree / name / NONCELL_MARKER).read_text()) for name in SETS}
    assert set(SETS["negatives"]).isdisjoint(SETS["ood"]) and set(SETS["negatives"]) | set(SETS["ood"]) == set(KINDS)
    assert metas["ood"]["seed"] == metas["negatives"]["seed"] + OOD_SEED_OFFSET == 3 + OOD_SEED_OFFSET
    for name, kinds in SETS.items():
        assert sorted(p.name for p in (tree / name).iterdir() if p.is_dir()) == sorted(kinds)
        for kind in kinds:
            files = sorted((tree / name / kind).glob("*.png"))
            assert len(files) == synth.SynthOptions(out=tree).non_cells == metas[name]["kinds"][kind]
            img = cv2.imread(str(files[0]))
            assert img.ndim == 3 and 72 <= img.shape[0] == img.shape[1] <= 200
    # an ImageFolder tree (no CROPPED/) must not take a marked folder as a class either
    flat = tmp_path / "flat"
    for c in ("parabasal", "koilocytotic"):
        (flat / c).mkdir(parents=True)
        shutil.copy(next((tree / f"im_{SIPAKMED_FOLDERS[c]}" / "CROPPED").glob("*.bmp")), flat / c / "a.bmp")
    shutil.copytree(tree / "ood", flat / "ood")
    index = scan_dataset(flat)
    assert index.layout == "imagefolder" and index.class_names == ["parabasal", "koilocytotic"]
    assert [p.name for p in index.ignored_dirs] == ["ood"]


def _sharpness(path: Path) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_non_cell_kinds_look_like_what_they_are_named(tree):
    def mean(name: str, kind: str) -> float:
        return float(np.mean([cv2.imread(str(p)).mean() for p in (tree / name / kind).glob("*.png")]))

    def sharp(name: str, kind: str) -> float:
        return float(np.median([_sharpness(p) for p in (tree / name / kind).glob("*.png")]))

    cells = float(np.median([_sharpness(p) for p in (tree / "im_Parabasal" / "CROPPED").glob("*.bmp")]))
    assert mean("ood", "black") < 30 and mean("ood", "white") > 225
    assert sharp("negatives", "noise") > 20 * cells
    assert sharp("negatives", "blur") < cells / 3 and sharp("ood", "out_of_focus") < cells / 3
    bubble = cv2.cvtColor(cv2.imread(str(next((tree / "ood" / "bubble").glob("*.png")))), cv2.COLOR_BGR2GRAY)
    h, w = bubble.shape
    assert bubble[h // 2 - 3:h // 2 + 3, w // 2 - 3:w // 2 + 3].mean() > bubble.mean()  # the clear centre


def test_crops_are_cut_from_their_frame(tree):
    for folder in _class_dirs(tree).values():
        frames = {p.stem: cv2.imread(str(p)) for p in folder.glob("*.bmp")}
        for crop_path in (folder / "CROPPED").glob("*.bmp"):
            crop = cv2.imread(str(crop_path))
            assert crop is not None and crop.ndim == 3 and crop.shape[2] == 3
            stem, k = crop_path.stem.split("_")
            frame_cyt = read_outline(folder / f"{stem}_cyt{k}.dat")
            crop_cyt = read_outline(crop_path.with_name(crop_path.stem + "_cyt.dat"))
            offset = np.round(frame_cyt - crop_cyt).astype(int)
            assert (offset == offset[0]).all()  # the same outline, shifted by the crop's corner
            x0, y0 = offset[0]
            h, w = crop.shape[:2]
            assert np.array_equal(crop, frames[stem][y0:y0 + h, x0:x0 + w])
            assert (crop_cyt >= 0).all() and (crop_cyt[:, 0] <= w).all() and (crop_cyt[:, 1] <= h).all()


def _inside(outer: np.ndarray, pts: np.ndarray) -> bool:
    contour = outer.astype(np.float32).reshape(-1, 1, 2)
    return all(cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in pts)


def test_outlines_lie_in_the_frame_and_nuclei_in_their_cells(tree):
    folders = [*_class_dirs(tree).values(), tree / "fields"]
    n = 0
    for folder in folders:
        for image in [*folder.glob("*.bmp"), *folder.glob("*.png")]:
            h, w = cv2.imread(str(image)).shape[:2]
            for cyt, nuc in _frame_cells(folder, image.stem):
                for pts in (cyt, nuc):
                    assert (pts >= 0).all() and (pts[:, 0] < w).all() and (pts[:, 1] < h).all()
                assert _inside(cyt, nuc)
                n += 1
    assert n >= len(SIPAKMED_CLASSES) * PER_CLASS


def test_fields_truth_lists_every_cell(tree):
    truth = json.loads((tree / "fields" / "truth.json").read_text())
    assert [f["image"] for f in truth["fields"]] == [f"field_{i:03d}.png" for i in range(1, FIELDS + 1)]
    seen = set()
    for f in truth["fields"]:
        img = cv2.imread(str(tree / "fields" / f["image"]))
        assert img.shape[:2] == (f["height"], f["width"]) == (SIZE[1], SIZE[0])
        assert len(f["cells"]) == len(list((tree / "fields").glob(f"{Path(f['image']).stem}_cyt*.dat")))
        for cell in f["cells"]:
            assert cell["class"] in SIPAKMED_CLASSES
            assert tuple(cell["bbox_xywh"]) == outline_bbox(read_outline(tree / "fields" / cell["cyt"]))
            assert (tree / "fields" / cell["nuc"]).is_file()
            seen.add(cell["class"])
        for d in f["distractors"]:
            x, y, w, h = d["bbox_xywh"]
            assert d["kind"] == "inflammatory" and x >= 0 and y >= 0 and x + w < SIZE[0] and y + h < SIZE[1]
    assert len(seen) >= 3  # the fields mix classes


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow  # two synthetic trees (~20 s)
def test_same_seed_gives_identical_files(tmp_path):
    small = dict(per_class=4, frames=2, fields=1, frame_size=(320, 256))
    generate(SynthOptions(out=tmp_path / "a", seed=7, **small))
    generate(SynthOptions(out=tmp_path / "b", seed=7, **small))
    generate(SynthOptions(out=tmp_path / "c", seed=8, **small))
    a, b, c = (_tree_hashes(tmp_path / n) for n in "abc")
    assert len(a) > 30 and a == b
    assert a.keys() == c.keys() and a["im_Parabasal/001.bmp"] != c["im_Parabasal/001.bmp"]


def _area(pts: np.ndarray) -> float:
    return float(cv2.contourArea(pts.astype(np.float32)))


def _masks(shape: tuple[int, int], cyt: np.ndarray, nuc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cm, nm = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    cv2.fillPoly(cm, [np.round(cyt).astype(np.int32)], 1)
    cv2.fillPoly(nm, [np.round(nuc).astype(np.int32)], 1)
    return cm.astype(bool), nm.astype(bool)


def _crop_measures(tree: Path) -> dict[str, dict[str, float]]:
    """Per class, medians over crops: N/C area ratio, cell area, orange-ness, perinuclear brightness."""
    out = {}
    for cls, folder in _class_dirs(tree).items():
        nc, area, orange, halo = [], [], [], []
        for crop_path in (folder / "CROPPED").glob("*.bmp"):
            img = cv2.imread(str(crop_path)).astype(np.float32)
            cyt = read_outline(crop_path.with_name(crop_path.stem + "_cyt.dat"))
            nuc = read_outline(crop_path.with_name(crop_path.stem + "_nuc.dat"))
            nc.append(_area(nuc) / _area(cyt))
            area.append(_area(cyt))
            cm, nm = _masks(img.shape[:2], cyt, nuc)
            ring = cv2.dilate(nm.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~nm & cm
            rest = cm & ~cv2.dilate(nm.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
            b, _, r = (img[..., i] for i in range(3))
            orange.append(float((r[rest] - b[rest]).mean()) if rest.any() else 0.0)
            grey = img.mean(axis=2)
            if ring.any() and rest.any():
                halo.append(float(grey[ring].mean() - grey[rest].mean()))
        out[cls] = {"nc": float(np.median(nc)), "area": float(np.median(area)),
                    "orange": float(np.median(orange)), "halo": float(np.median(halo))}
    return out


def test_classes_differ_in_the_intended_direction(tree):
    m = _crop_measures(tree)
    assert m["parabasal"]["nc"] > m["metaplastic"]["nc"] > m["koilocytotic"]["nc"] > m["superficial_intermediate"]["nc"]
    assert m["superficial_intermediate"]["area"] > 2 * m["parabasal"]["area"]
    assert m["dyskeratotic"]["area"] < m["metaplastic"]["area"]
    others = [c for c in SIPAKMED_CLASSES if c != "dyskeratotic"]
    assert m["dyskeratotic"]["orange"] > max(m[c]["orange"] for c in others) + 20  # keratinised: orange
    others = [c for c in SIPAKMED_CLASSES if c != "koilocytotic"]
    assert m["koilocytotic"]["halo"] > max(m[c]["halo"] for c in others) + 10  # a clear perinuclear halo


def test_difficulty_makes_the_classes_overlap():
    """Nearest-class-mean on the drawn parameters: near perfect at 0, clearly worse at 1."""
    scale = np.array([max(abs(class_mean(c)[p]) for c in SIPAKMED_CLASSES) for p in PARAMS])
    means = np.array([[class_mean(c)[p] for p in PARAMS] for c in SIPAKMED_CLASSES]) / scale

    def accuracy(difficulty: float) -> float:
        rng = np.random.default_rng(0)
        hits = 0
        for k, cls in enumerate(SIPAKMED_CLASSES):
            for _ in range(200):
                v = np.array(sample_cell(cls, difficulty, rng).values) / scale
                hits += int(np.argmin(((means - v) ** 2).sum(1)) == k)
        return hits / (200 * len(SIPAKMED_CLASSES))

    easy, default, hard = accuracy(0.0), accuracy(synth.DEFAULT_DIFFICULTY), accuracy(1.0)
    assert easy > 0.97 and easy > default > hard and hard < 0.85


@pytest.mark.parametrize("kw, match", [
    ({"per_class": 0}, "--per-class"),
    ({"difficulty": 1.5}, "--difficulty"),
    ({"difficulty": -0.1}, "--difficulty"),
    ({"per_class": 4, "frames": 5}, "--frames"),
    ({"fields": -1}, "--fields"),
    ({"per_class": 100, "frames": 1, "frame_size": (320, 256)}, "do not fit"),
])
def test_bad_options_raise_config_error(tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        generate(SynthOptions(out=tmp_path / "x", **kw))
    assert not (tmp_path / "x").exists()


def test_out_folder_problems_raise_data_error(tmp_path):
    small = dict(per_class=2, frames=1, frame_size=(320, 256))
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    with pytest.raises(DataError, match="is a file"):
        generate(SynthOptions(out=a_file, **small))
    with pytest.raises(DataError, match="cannot write"):
        generate(SynthOptions(out=a_file / "below", **small))
    real = tmp_path / "real"
    (real / "im_Parabasal").mkdir(parents=True)
    (real / "im_Parabasal" / "001.bmp").write_bytes(b"someone's data")
    with pytest.raises(DataError, match="not a synthetic tree"):
        generate(SynthOptions(out=real, **small))
    assert (real / "im_Parabasal" / "001.bmp").read_bytes() == b"someone's data"  # untouched


def test_a_previous_synthetic_tree_is_replaced_whole(tmp_path):
    out = tmp_path / "data"
    generate(SynthOptions(out=out, per_class=4, frames=2, fields=1, frame_size=(320, 256)))
    generate(SynthOptions(out=out, per_class=2, frames=1, frame_size=(320, 256)))
    assert len(list((out / "im_Parabasal" / "CROPPED").glob("*.bmp"))) == 2
    assert not (out / "fields").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert json.loads((out / "synth.json").read_text())["options"]["per_class"] == 2


def test_main_prints_one_line_and_bad_input_is_one_line_error(tmp_path, capsys):
    assert run_cli("edge-train synth", synth.main, ["--out", str(tmp_path / "d"), "--per-class", "2",
                                                    "--frames", "1", "--frame-size", "320x256"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("synth: wrote 10 crops")
    assert run_cli("edge-train synth", synth.main, ["--out", str(tmp_path / "e"), "--difficulty", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edge-train synth: error: --difficulty must be between 0 and 1, got 2.0"]
