"""Partitioners: exact coverage, the skew each scheme promises, determinism, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedarena.fl_core.partition import PARTITIONERS, label_distribution, partition
from fedarena.fl_core.registry import UnknownNameError

# MNIST-like uneven class sizes (scaled down), shuffled
_SIZES = [592, 674, 596, 613, 584, 542, 592, 627, 585, 595]
LABELS = torch.from_numpy(np.random.default_rng(0).permutation(np.repeat(np.arange(10), _SIZES)))

CASES = [("iid", {}), ("dirichlet", {"alpha": 0.5}), ("dirichlet", {"alpha": 0.05}),
         ("shards", {"shards_per_client": 2}), ("quantity_skew", {"beta": 0.5})]


def mean_label_entropy(parts: list[torch.Tensor], labels: torch.Tensor = LABELS) -> float:
    counts = label_distribution(labels, parts, 10).astype(float)
    p = counts / counts.sum(axis=1, keepdims=True)
    logp = np.log(np.where(p > 0, p, 1.0))
    return float(np.mean(-(p * logp).sum(axis=1)))


def test_registered_names() -> None:
    assert PARTITIONERS.names() == ["dirichlet", "iid", "noniid_s", "quantity_skew", "shards"]


@pytest.mark.parametrize("name, kwargs", CASES)
def test_every_sample_exactly_once(name: str, kwargs: dict) -> None:
    parts = partition(name, LABELS, 20, seed=3, **kwargs)
    assert len(parts) == 20
    assert all(p.dtype == torch.int64 and p.dim() == 1 and len(p) >= 1 for p in parts)
    everything = torch.cat(parts)
    assert torch.equal(everything.sort().values, torch.arange(len(LABELS)))
    assert all(torch.equal(p, p.sort().values) for p in parts)


@pytest.mark.parametrize("name, kwargs", CASES)
def test_same_seed_same_partition_other_seed_differs(name: str, kwargs: dict) -> None:
    a = partition(name, LABELS, 10, seed=7, **kwargs)
    b = partition(name, LABELS, 10, seed=7, **kwargs)
    c = partition(name, LABELS, 10, seed=8, **kwargs)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_iid_sizes_balanced_and_labels_mixed() -> None:
    parts = partition("iid", LABELS, 7, seed=0)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert mean_label_entropy(parts) > 0.98 * np.log(10)


def test_dirichlet_small_alpha_skews_labels() -> None:
    skewed = np.mean([mean_label_entropy(partition("dirichlet", LABELS, 20, seed=s, alpha=0.05))
                      for s in range(3)])
    near_iid = np.mean([mean_label_entropy(partition("dirichlet", LABELS, 20, seed=s, alpha=100))
                        for s in range(3)])
    assert near_iid > 0.98 * np.log(10)
    assert skewed < 0.4 * np.log(10)
    # each class's samples keep their label: the per-class totals are the dataset's
    counts = label_distribution(LABELS, partition("dirichlet", LABELS, 20, seed=0, alpha=0.05))
    assert counts.sum(axis=0).tolist() == _SIZES


def test_dirichlet_min_size_is_respected_or_explained() -> None:
    parts = partition("dirichlet", LABELS, 10, seed=1, alpha=0.5, min_size=200)
    assert min(len(p) for p in parts) >= 200
    with pytest.raises(ValueError, match="raise alpha or lower min_size"):
        partition("dirichlet", LABELS, 50, seed=1, alpha=0.01, min_size=100, max_draws=5)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_shards_give_at_most_k_classes_per_client(k: int) -> None:
    parts = partition("shards", LABELS, 25, seed=2, shards_per_client=k)
    classes_per_client = (label_distribution(LABELS, parts, 10) > 0).sum(axis=1)
    assert classes_per_client.max() <= k
    assert classes_per_client.mean() > 0.8 * min(k, 10)  # shards mostly land on distinct classes
    sizes = np.array([len(p) for p in parts])
    assert sizes.max() <= 1.25 * sizes.mean()  # near-equal shards, as McMahan et al.


def test_shards_need_enough_shards_for_classes() -> None:
    with pytest.raises(ValueError, match="cannot cover 10 classes"):
        partition("shards", LABELS, 3, seed=0, shards_per_client=2)


def test_quantity_skew_sizes_vary_labels_do_not() -> None:
    parts = partition("quantity_skew", LABELS, 10, seed=4, beta=0.3)
    sizes = np.array([len(p) for p in parts])
    assert sizes.std() / sizes.mean() > 0.5
    flat = partition("quantity_skew", LABELS, 10, seed=4, beta=1000)
    flat_sizes = np.array([len(p) for p in flat])
    assert flat_sizes.std() / flat_sizes.mean() < 0.1
    big = [p for p in parts if len(p) > 300]
    assert mean_label_entropy(big) > 0.95 * np.log(10)


def test_labels_as_list_or_array_and_sparse_label_values() -> None:
    y = [3, 7, 3, 7, 3, 7, 42, 42]
    parts = partition("shards", y, 3, seed=0, shards_per_client=1)
    assert sorted(torch.cat(parts).tolist()) == list(range(8))
    assert all(len({y[i] for i in p.tolist()}) == 1 for p in parts)
    parts_np = partition("dirichlet", np.array(y), 2, seed=0, alpha=1.0)
    assert sum(len(p) for p in parts_np) == 8


def test_bad_arguments() -> None:
    with pytest.raises(UnknownNameError, match="known: dirichlet, iid"):
        partition("pathological", LABELS, 4, seed=0)
    with pytest.raises(ValueError, match="cannot give 9 clients"):
        partition("iid", torch.arange(5), 9, seed=0)
    with pytest.raises(ValueError, match="num_clients"):
        partition("iid", LABELS, 0, seed=0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        partition("dirichlet", LABELS, 4, seed=0, alpha=0)
    with pytest.raises(ValueError, match="1-d integer"):
        partition("iid", torch.rand(10), 2, seed=0)
