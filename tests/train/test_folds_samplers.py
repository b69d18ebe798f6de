"""Folds keep cluster images together and stay stratified; P x K batches hold positives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cytoedge.train.data.samplers import PKBatchSampler
from cytoedge.train.data.sipakmed import Sample
from cytoedge.train.errors import DataError
from cytoedge.train.folds import make_folds


def _samples(n_classes=3, groups_per_class=6, per_group=4):
    out = []
    for c in range(n_classes):
        for g in range(groups_per_class):
            for i in range(per_group):
                out.append(Sample(Path(f"{c}/{g:03d}_{i:02d}.bmp"), c, f"c{c}/{g:03d}"))
    return out


def test_group_aware_folds_never_split_a_cluster_image():
    samples = _samples()
    folds = make_folds(samples, ["a", "b", "c"], 3, groups=True, seed=0)
    assert len(folds) == 3
    seen_val = np.concatenate([va for _, va in folds])
    assert sorted(seen_val.tolist()) == list(range(len(samples)))  # every sample validated once
    for tr, va in folds:
        assert not {samples[i].group for i in tr} & {samples[i].group for i in va}
        assert set(Counter(samples[i].label for i in va)) == {0, 1, 2}  # stratified: every class in every fold


def test_plain_split_mixes_groups_like_the_paper():
    samples = _samples()
    folds = make_folds(samples, ["a", "b", "c"], 3, groups=False, seed=0)
    shared = [bool({samples[i].group for i in tr} & {samples[i].group for i in va}) for tr, va in folds]
    assert any(shared)


def test_too_few_images_or_groups_for_the_folds():
    samples = _samples(groups_per_class=2, per_group=2)
    with pytest.raises(DataError, match="comes from 2 cluster image"):
        make_folds(samples, ["a", "b", "c"], 3, groups=True)
    with pytest.raises(DataError, match="class 'a' has 4 image"):
        make_folds(samples, ["a", "b", "c"], 5, groups=False)


def test_pk_batches_hold_p_classes_times_k_images_and_split_across_ranks():
    labels = [s.label for s in _samples(n_classes=4)]
    sampler = PKBatchSampler(labels, p=3, k=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(labels) // 12
    for b in batches:
        counts = Counter(labels[i] for i in b)
        assert len(b) == 12 and len(counts) == 3 and set(counts.values()) == {4}
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new order every epoch
    r0 = list(PKBatchSampler(labels, 3, 4, seed=1, rank=0, world_size=2))
    r1 = list(PKBatchSampler(labels, 3, 4, seed=1, rank=1, world_size=2))
    assert len(r0) == len(r1) and r0 != r1
    with pytest.raises(ValueError):
        PKBatchSampler(labels, p=9, k=2)
