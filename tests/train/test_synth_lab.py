"""Lab knobs of the generator (train.data.synth_lab): lab A is the generator as it was, lab B another lab."""

from __future__ import annotations

import numpy as np
import pytest

from cytoedge.train.data.synth_frames import compose_frame
from cytoedge.train.data.synth_lab import LABS, LabStyle
from cytoedge.train.errors import ConfigError

CLASSES = ["dyskeratotic", "koilocytotic", "superficial_intermediate"]


def _frame(lab: LabStyle, seed: int = 5):
    return compose_frame(CLASSES, (320, 256), 0.45, np.random.default_rng(seed), lab=lab)


def test_lab_a_draws_nothing_more_than_the_plain_generator():
    plain = compose_frame(CLASSES, (320, 256), 0.45, np.random.default_rng(5))
    assert np.array_equal(plain.image, _frame(LABS["a"]).image)
    # and the same random stream afterwards: lab A consumed no extra number
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    compose_frame(CLASSES, (320, 256), 0.45, r1)
    compose_frame(CLASSES, (320, 256), 0.45, r2, lab=LabStyle())
    assert r1.random() == r2.random()


def test_lab_b_changes_the_picture_not_the_cells():
    a, b = _frame(LABS["a"]), _frame(LABS["b"])
    assert [c.cls for c in a.cells] == [c.cls for c in b.cells]
    assert all(np.array_equal(x.shape.cyt, y.shape.cyt) for x, y in zip(a.cells, b.cells))
    bg_a, bg_b = np.median(a.image.reshape(-1, 3), 0), np.median(b.image.reshape(-1, 3), 0)  # BGR background
    assert bg_b[2] / bg_b[0] > bg_a[2] / bg_a[0] * 1.1  # warmer white balance: more red against blue


@pytest.mark.parametrize("knob", [dict(haematoxylin=1.5), dict(stain_hue=20.0), dict(white_balance=(1.1, 1, 0.9)),
                                  dict(gamma=0.8), dict(falloff=0.2), dict(blur=1.0), dict(jpeg_quality=50)])
def test_every_knob_changes_the_picture(knob):
    assert not np.array_equal(_frame(LABS["a"]).image, _frame(LabStyle(name="x", **knob)).image)


def test_unknown_lab_is_a_config_error(tmp_path):
    from cytoedge.train.data.synth import SynthOptions, generate

    with pytest.raises(ConfigError, match="--lab"):
        generate(SynthOptions(out=tmp_path / "x", per_class=2, frames=1, lab="z"))
