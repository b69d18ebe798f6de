"""Property-based tests (Hypothesis) of what the device parses from outside: the model card and slide IDs.
(The web view's inputs: tests/edge_app/web/test_web_hostile.py.)"""

from __future__ import annotations

import copy
import json
from pathlib import Path, PurePosixPath

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cytoedge.edge_app.card import ArtifactEntry, ModelCard, TensorSpec, parse_card
from cytoedge.edge_app.errors import CytoEdgeError, ModelCardError
from cytoedge.edge_app.preprocess import PreprocessSpec, Quantization
from cytoedge.edge_app.rejection import OpenSetScore
from cytoedge.edge_app.store import _SLIDE_ID, check_slide_id

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def valid_card() -> dict:
    entry = ArtifactEntry(
        format="tflite-int8", file="model_int8.tflite", sha256="ab" * 32, size_bytes=10,
        input=TensorSpec("input", [-1, 32, 32, 3], "uint8", Quantization(1.0, 0, "uint8"), layout="NHWC",
                         space="pixels"),
        outputs={"logits": TensorSpec("logits", [-1, 5], "int8", Quantization(0.1, 3, "int8"), index=0),
                 "embedding": TensorSpec("embedding", [-1, 8], index=1)},
        max_batch=8, open_set=OpenSetScore("centroid", 2.5, means=np.zeros((5, 8))),
        calibration={"temperature": 1.5}, validation={"accuracy": 0.9})
    return ModelCard(architecture="shufflenet_v2_x1_0", class_names=["superficial_intermediate", "parabasal",
                     "metaplastic", "koilocytotic", "dyskeratotic"], preprocessing=PreprocessSpec(32, 32),
                     embedding_dim=8, artifacts={"tflite-int8": entry}, created="2026-11-25").to_dict()


BASE = valid_card()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


def paths(d, prefix=()):
    """Every key path into a nested dict/list."""
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from paths(v, (*prefix, i))


ALL_PATHS = [p for p in paths(BASE) if p]


@st.composite
def mutated_cards(draw):
    """The valid card with one to three subtrees replaced by arbitrary JSON, or deleted."""
    card = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = card
        try:
            for k in path[:-1]:
                parent = parent[k]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the way there
    return card


@FAST
@given(mutated_cards())
def test_a_mutated_card_is_read_or_refused_with_a_model_card_error(card):
    raw = json.dumps(card).encode()
    try:
        got = parse_card(raw, Path("model_card.json"))
    except ModelCardError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(got, ModelCard) and got.class_names


@FAST
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_are_never_more_than_a_model_card_error(raw):
    try:
        parse_card(raw, Path("model_card.json"))
    except ModelCardError:
        pass


def test_the_valid_card_parses():
    assert parse_card(json.dumps(BASE).encode(), Path("model_card.json")).artifacts["tflite-int8"].max_batch == 8


@FAST
@given(st.text(max_size=80))
def test_slide_ids_are_accepted_exactly_when_they_are_one_safe_folder_name(text):
    try:
        got = check_slide_id(text)
    except CytoEdgeError:
        assert not _SLIDE_ID.fullmatch(text)
        return
    assert got == text and 1 <= len(text) <= 64
    part = PurePosixPath("crops") / text
    assert part.parent == PurePosixPath("crops") and part.name == text  # one component, inside crops/
    assert text not in (".", "..") and not text.startswith((".", "-")) and "/" not in text and "\\" not in text
    assert text.isascii() and text.isprintable()


@FAST
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True))
def test_every_id_of_the_documented_form_is_accepted(text):
    assert check_slide_id(text) == text
