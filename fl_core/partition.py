"""Split a dataset's sample indices among federated clients: IID and the usual non-IID schemes.

``partition(name, labels, num_clients, seed, **kwargs)`` returns one sorted int64 index
tensor per client; every sample is assigned to exactly one client, except by
``noniid_s``, which gives each client a fixed number and leaves the rest unused (owner -1);
no sample ever goes to two clients. Each partitioner
draws from ``numpy_rng(seed, "partition", name)``, so the same seed gives the same split
and adding a partitioner never changes another's numbers. All schemes are vectorised
over samples and clients (the only Python loops are over re-draws).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedarena.fl_core.registry import Registry
from fedarena.fl_core.seeding import numpy_rng

Partitioner = Callable[..., np.ndarray]
PARTITIONERS: Registry[Partitioner] = Registry("partitioner")


def partition(name: str, labels: Tensor | np.ndarray | list[int], num_clients: int, seed: int,
              **kwargs: Any) -> list[Tensor]:
    """Assign every index of ``labels`` to one of ``num_clients`` clients with scheme ``name``."""
    fn = PARTITIONERS.get(name)
    y = _as_labels(labels)
    if int(num_clients) != num_clients or num_clients < 1:
        raise ValueError(f"num_clients must be a positive integer, got {num_clients!r}")
    num_clients = int(num_clients)
    if num_clients > len(y):
        raise ValueError(f"cannot give {num_clients} clients at least one of {len(y)} samples")
    owner = fn(y, num_clients, numpy_rng(seed, "partition", name), **kwargs)
    return _split_by_owner(owner, num_clients)


#: HyperFL's / FedPAC's dominant label groups for 10 classes; client i draws from group i % 5.
NONIID_S_GROUPS: tuple[tuple[int, ...], ...] = ((0, 1, 2), (2, 3, 4), (4, 5, 6), (6, 7, 8), (8, 9, 0))


@PARTITIONERS.register("noniid_s")
def noniid_s(labels: np.ndarray, num_clients: int, rng: np.random.Generator, local_size: int = 600,
             iid_fraction: float = 0.2, groups: tuple[tuple[int, ...], ...] = NONIID_S_GROUPS) -> np.ndarray:
    """Each client gets ``local_size`` samples: ``iid_fraction`` spread evenly over all
    classes, the rest evenly over its dominant group ``groups[i % len(groups)]``.

    The reference (FedPAC's and HyperFL's ``cifar_noniid_s`` / ``fmnist_noniid_s``,
    ``noniid_s=20``): ``n_iid = int(local_size·s)``, ``n_iid // K`` per class with the
    remainder on the last class; ``(local_size − n_iid) // |group|`` per group label with
    the remainder on its last; the five triplets above, by client index. It uses 600 per
    client for training and 300 for each client's local test split (the same scheme on the
    test set). The reference walks the label-sorted samples from fixed offsets and wraps
    round, reusing samples, when a class runs out; here each class is shuffled by the seed
    and taken in turn, and a class that runs out is an error (no sample serves two clients).
    Samples no client needs get owner -1.
    """
    if int(local_size) != local_size or local_size < 1:
        raise ValueError(f"noniid_s: local_size must be a positive integer, got {local_size!r}")
    if not 0 <= iid_fraction <= 1:
        raise ValueError(f"noniid_s: iid_fraction must be in [0, 1], got {iid_fraction}")
    classes, y = np.unique(labels, return_inverse=True)
    k = len(classes)
    position = {int(c): j for j, c in enumerate(classes)}
    if not groups or any(not g for g in groups):
        raise ValueError(f"noniid_s: groups must be non-empty label groups, got {groups!r}")
    unknown = sorted({int(c) for g in groups for c in g} - set(position))
    if unknown:
        raise ValueError(f"noniid_s: group labels {unknown} are not among the dataset's labels {classes.tolist()}")
    n_iid = int(local_size * iid_fraction)
    n_dominant = int(local_size) - n_iid
    counts = np.zeros((num_clients, k), dtype=np.int64)  # [client, class]
    counts[:, :] = n_iid // k
    counts[:, -1] += n_iid - k * (n_iid // k)
    for i in range(num_clients):
        group = [position[int(c)] for c in groups[i % len(groups)]]
        per = n_dominant // len(group)
        np.add.at(counts[i], group, per)
        counts[i, group[-1]] += n_dominant - per * len(group)
    class_sizes = np.bincount(y, minlength=k)
    short = np.nonzero(counts.sum(axis=0) > class_sizes)[0]
    if len(short):
        j = int(short[0])
        raise ValueError(f"noniid_s: class {classes[j]} has {class_sizes[j]} samples but {num_clients} clients "
                         f"of {local_size} need {int(counts[:, j].sum())}; lower local_size or num_clients")
    order = _grouped_by_class(y, rng)
    starts = np.cumsum(class_sizes) - class_sizes
    owner = np.full(len(y), -1, dtype=np.int64)
    for j in range(k):
        takers = np.repeat(np.arange(num_clients), counts[:, j])
        owner[order[starts[j]:starts[j] + len(takers)]] = takers
    return owner


@PARTITIONERS.register("iid")
def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random, equal sizes (differing by at most one sample)."""
    owner = np.empty(len(labels), dtype=np.int64)
    owner[rng.permutation(len(labels))] = np.arange(len(labels)) % num_clients
    return owner


@PARTITIONERS.register("dirichlet")
def dirichlet(labels: np.ndarray, num_clients: int, rng: np.random.Generator, alpha: float = 0.5,
              min_size: int = 1, max_draws: int = 10_000) -> np.ndarray:
    """Label skew: each class's samples are split among clients in proportions ~ Dir(alpha).

    Hsu, Qi & Brown (2019) model client label distributions with a Dirichlet(alpha); this is
    the per-class form used by their successors' code (Yurochkin et al. 2019; Wang et al.
    2020, FedMA; Li et al. 2022, NIID-Bench): for class k draw p_k ~ Dir_n(alpha) over the n
    clients and give client j a share p_kj of class k. Small alpha → each class sits on few
    clients; alpha → ∞ → IID. The whole draw is repeated until every client holds at least
    ``min_size`` samples (NIID-Bench uses 10; default 1 here, i.e. no empty client); after
    ``max_draws`` failures a ValueError suggests a larger alpha or a smaller ``min_size``.
    """
    if not alpha > 0:
        raise ValueError(f"dirichlet: alpha must be > 0, got {alpha}")
    classes, y = np.unique(labels, return_inverse=True)
    class_sizes = np.bincount(y, minlength=len(classes))
    order = _grouped_by_class(y, rng)
    for _ in range(int(max_draws)):
        proportions = rng.dirichlet(np.full(num_clients, float(alpha)), size=len(classes))
        counts = _counts_from_shares(proportions, class_sizes)  # [K, n]
        if counts.sum(axis=0).min() >= min_size:
            owner = np.empty(len(y), dtype=np.int64)
            owner[order] = np.repeat(np.tile(np.arange(num_clients), len(classes)), counts.ravel())
            return owner
    raise ValueError(f"dirichlet: no draw in {max_draws} gave every one of {num_clients} clients "
                     f"≥ {min_size} samples with alpha={alpha}; raise alpha or lower min_size")


@PARTITIONERS.register("shards")
def shards(labels: np.ndarray, num_clients: int, rng: np.random.Generator,
           shards_per_client: int = 2) -> np.ndarray:
    """Pathological non-IID (McMahan et al. 2017): label-sorted shards, k per client.

    McMahan et al. sort MNIST by label, cut it into 200 shards of 300 and give each of 100
    clients 2 shards. Here the n·k shards are cut *within* classes (each class gets a number
    of near-equal shards proportional to its size, at least one), so no shard straddles two
    labels and every client holds at most k classes; shard sizes then vary slightly with the
    class sizes. Needs n·k ≥ number of classes.
    """
    k = int(shards_per_client)
    if k < 1:
        raise ValueError(f"shards: shards_per_client must be >= 1, got {shards_per_client}")
    classes, y = np.unique(labels, return_inverse=True)
    num_shards = num_clients * k
    if num_shards < len(classes):
        raise ValueError(f"shards: {num_clients} clients × {k} shards = {num_shards} shards "
                         f"cannot cover {len(classes)} classes with label-pure shards")
    if num_shards > len(y):
        raise ValueError(f"shards: {num_shards} shards for only {len(y)} samples")
    class_sizes = np.bincount(y, minlength=len(classes))
    per_class = _apportion(num_shards, class_sizes)
    order = _grouped_by_class(y, rng)
    # position of each sample within its class → shard index within the class
    starts = np.repeat(np.cumsum(class_sizes) - class_sizes, class_sizes)
    rank = np.arange(len(y)) - starts
    cls = np.repeat(np.arange(len(classes)), class_sizes)
    local = rank * per_class[cls] // class_sizes[cls]
    shard_of_sample = (np.cumsum(per_class) - per_class)[cls] + local
    client_of_shard = np.empty(num_shards, dtype=np.int64)
    client_of_shard[rng.permutation(num_shards)] = np.arange(num_shards) // k
    owner = np.empty(len(y), dtype=np.int64)
    owner[order] = client_of_shard[shard_of_sample]
    return owner


@PARTITIONERS.register("quantity_skew")
def quantity_skew(labels: np.ndarray, num_clients: int, rng: np.random.Generator,
                  beta: float = 0.5, min_size: int = 1, max_draws: int = 10_000) -> np.ndarray:
    """Quantity skew (Li et al. 2022, NIID-Bench): sizes ~ Dir_n(beta)·N, data IID.

    Re-drawn until every client holds at least ``min_size`` samples, as ``dirichlet``.
    """
    if not beta > 0:
        raise ValueError(f"quantity_skew: beta must be > 0, got {beta}")
    n = len(labels)
    perm = rng.permutation(n)
    for _ in range(int(max_draws)):
        shares = rng.dirichlet(np.full(num_clients, float(beta)))
        sizes = _counts_from_shares(shares[None, :], np.array([n]))[0]
        if sizes.min() >= min_size:
            owner = np.empty(n, dtype=np.int64)
            owner[perm] = np.repeat(np.arange(num_clients), sizes)
            return owner
    raise ValueError(f"quantity_skew: no draw in {max_draws} gave every one of {num_clients} "
                     f"clients ≥ {min_size} samples with beta={beta}; raise beta or lower min_size")


def label_distribution(labels: Tensor | np.ndarray, parts: list[Tensor],
                       num_classes: int | None = None) -> np.ndarray:
    """``[num_clients, num_classes]`` label counts per client (for reports and tests)."""
    y = _as_labels(labels)
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    idx = torch.cat([torch.as_tensor(p, dtype=torch.int64) for p in parts]).numpy()
    owner = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    return np.bincount(owner * k + y[idx], minlength=len(parts) * k).reshape(len(parts), k)


def _as_labels(labels: Tensor | np.ndarray | list[int]) -> np.ndarray:
    y = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-d integer array, got shape {y.shape} dtype {y.dtype}")
    if len(y) == 0:
        raise ValueError("labels is empty")
    return y.astype(np.int64, copy=False)


def _grouped_by_class(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All indices, grouped by class (ascending), in random order within each class."""
    perm = rng.permutation(len(y))
    return perm[np.argsort(y[perm], kind="stable")]


def _counts_from_shares(shares: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Integer counts per row summing exactly to ``totals`` (rounded cumulative shares)."""
    cum = np.floor(np.cumsum(shares, axis=1) * totals[:, None] + 0.5).astype(np.int64)
    cum[:, -1] = totals
    cum = np.minimum(cum, totals[:, None])
    return np.diff(cum, axis=1, prepend=0)


def _apportion(total: int, sizes: np.ndarray) -> np.ndarray:
    """Split ``total`` shards over classes ∝ size (largest remainder), each class ≥ 1."""
    quota = total * sizes / sizes.sum()
    alloc = np.maximum(np.floor(quota).astype(np.int64), 1)
    while alloc.sum() < total:  # ≤ number of classes iterations
        alloc[np.argmax(quota - alloc)] += 1
    while alloc.sum() > total:
        alloc[np.argmax(np.where(alloc > 1, alloc - quota, -np.inf))] -= 1
    return alloc  # ≤ sizes whenever total ≤ sizes.sum(), since quota_k ≤ size_k


def _split_by_owner(owner: np.ndarray, num_clients: int) -> list[Tensor]:
    """Indices per client (ascending); owner -1 (unassigned) is dropped."""
    order = np.argsort(owner, kind="stable")  # indices ascending within each client
    sizes = np.bincount(owner[owner >= 0], minlength=num_clients)
    order = order[len(owner) - int(sizes.sum()):]  # the -1 block sorts first
    return [torch.from_numpy(part.copy()) for part in np.split(order, np.cumsum(sizes)[:-1])]
