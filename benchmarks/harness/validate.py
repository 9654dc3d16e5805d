"""Up-front checks of a block with its real sizes, so a suite that validates does not fail at run time.

The schema check (``suite._Validator``) knows each component's parameters; this one knows
what the run will hand it: the dataset's files, size, classes and image shape
(``fedarena.fl_core.datasets.dataset_facts``, the loader's own file steps, without converting any
pixels), the federation's client count, each round's number of uploads. With those every
component is built or called the way the run builds or calls it, through the same
registries and functions:

- the dataset and the robustness test set: files present (a ``MissingDataError`` names
  them and the folder), ``indices`` / ``size`` within the split (``tasks.common.subset_indices``);
- the partition of the (subset's real) labels over the clients, for every seed;
- the model for the dataset's classes and shape, and the protocol's server model from it;
- the unreliable clients' corruption on images of the dataset's shape;
- each data-poisoning attack on a probe of the dataset's classes and shape;
- each aggregator (a robust one, or a privacy defense's) on one round of ``n`` random
  uploads: an error, or an ``info["…f_clamped"]`` record (an ``f`` the round's ``n`` does
  not admit, e.g. Krum's ``n >= 2f + 3``), is a problem of the suite.

Only the component's own checks decide; nothing here repeats their rules. Results are
cached per validation (a grid repeats the same dataset and model many times), so a suite
validates in well under a second once the libraries are imported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from fedarena.defenses.registry import ClientDefense
from fedarena.fl_core.data import ImageDataset, Normalization
from fedarena.fl_core.data_root import CorruptDataError
from fedarena.fl_core.datasets import DATASETS, DatasetFacts, dataset_facts
from fedarena.fl_core.partition import PARTITIONERS, partition

from .components import Components
from .params import Problem, build_component
from .tasks.common import federation_context, subset_indices

PROBE_DIM = 16  # coordinates of the random uploads an aggregator is tried on


class Preflight:
    """Checks blocks against their real sizes; one instance per suite validation (it caches)."""

    def __init__(self, comps: Components) -> None:
        self.c = comps
        self._facts: dict[str, tuple[DatasetFacts | None, str | None, str]] = {}
        self._built: dict[str, str | None] = {}
        self._cached: dict[str, str | None] = {}  # check → its problem (None: fine)
        self._first: dict[str, str] = {}  # check → the field it was first reported at

    def block(self, path: str, task: str, *, dataset: dict[str, Any], fed: dict[str, Any], seeds: Sequence[int],
              model: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
              attacks: Sequence[tuple[dict[str, Any], str]] | None = None,
              defenses: Sequence[tuple[dict[str, Any], str]] | None = None) -> list[Problem]:
        """Problems of one block variant: its well-formed parts (``None`` for a part the schema
        check refused, which is then skipped), as ``suite._Validator.resolve`` resolved them."""
        problems: list[Problem] = []
        train = self.dataset(dataset, f"{path}.dataset", seeds, problems)
        if task == "robustness" and extra is not None:
            self.dataset(extra["test_dataset"], f"{path}.test_dataset", (), problems)
        if train is not None:
            facts, labels = train
            for seed, y in labels.items():
                self.partition(dataset, fed, y, seed, f"{path}.federation.partition", problems)
            if model is not None:
                self.model(model, fed, facts, path, problems)
            probe = _probe(facts, dataset["name"])
            if extra is not None and extra.get("unreliable"):
                self.corruption(extra["unreliable"]["corruption"], probe, f"{path}.unreliable.corruption", problems)
            if task == "robustness":
                for i, (attack, _) in enumerate(attacks or ()):
                    for j, group in enumerate(attack["groups"]):
                        where = f"{path}.attacks[{i}]" + (f".mix[{j}]" if len(attack["groups"]) > 1 else "")
                        self.data_attack(group, probe, where, problems)
        if task == "privacy":
            for i, (attack, _) in enumerate(attacks or ()):
                self.prior(attack, f"{path}.attacks[{i}]", problems)
        uploads = fed["clients_per_round"] or fed["clients"]
        for i, (defense, _) in enumerate(defenses or ()):
            self.aggregator(defense, fed, uploads, f"{path}.defenses[{i}]", problems)
        return problems

    # -- data

    def dataset(self, spec: dict[str, Any], path: str, seeds: Sequence[int],
                problems: list[Problem]) -> tuple[DatasetFacts, dict[int, torch.Tensor]] | None:
        """The split's facts and, per seed, the labels of the samples the run keeps."""
        key = json.dumps([spec["name"], spec["split"], spec["params"]], sort_keys=True, default=str)
        if key not in self._facts:
            try:
                self._facts[key] = self._read_facts(spec["name"], spec["split"], spec["params"]), None, path
            except Exception as exc:  # whatever stops the loader stops every run of this block
                self._facts[key] = None, _error_text(exc), path
        facts, error, first = self._facts[key]
        if facts is None:
            problems.append((path, f"dataset {spec['name']!r} ({spec['split']}) cannot be read"
                                   + (f": {error}" if first == path else f" (see {first})")))
            return None
        labels: dict[int, torch.Tensor] = {}
        for seed in seeds or (0,):
            try:
                idx = subset_indices(spec, facts.size, seed)
            except ValueError as exc:
                problems.append((f"{path}.{'indices' if spec.get('indices') is not None else 'size'}", str(exc)))
                return None
            labels[seed] = facts.labels if idx is None else facts.labels[torch.as_tensor(idx, dtype=torch.long)]
            if spec.get("size") is None:  # the same samples for every seed
                labels = dict.fromkeys(seeds or (0,), labels[seed])
                break
        return facts, labels

    def _read_facts(self, name: str, split: str, params: dict[str, Any]) -> DatasetFacts:
        loader = self.c.datasets.get(name)
        if name in DATASETS and DATASETS.get(name) is loader:
            return dataset_facts(name, split, **params)
        return DatasetFacts.of(loader(split=split, **params))  # a registry of the caller's own

    def partition(self, dataset: dict[str, Any], fed: dict[str, Any], labels: torch.Tensor, seed: int, path: str,
                  problems: list[Problem]) -> None:
        if self.c.partitioners is not PARTITIONERS:
            return  # a registry of the caller's own: ``partition`` would not find its entries
        part = fed["partition"]
        key = _key("partition", dataset, part, fed["clients"], seed)
        if key not in self._cached:
            try:
                partition(part["name"], labels, fed["clients"], seed, **part["params"])
                self._cached[key] = None
            except (ValueError, TypeError) as exc:
                self._cached[key] = (f"partition {part['name']!r} of {len(labels)} samples over {fed['clients']} "
                                     f"clients (seed {seed}) fails: {exc}")
        if self._cached[key] is not None:
            problems.append((path, self._cached[key]))

    # -- model and protocol

    def model(self, spec: dict[str, Any], fed: dict[str, Any], facts: DatasetFacts, path: str,
              problems: list[Problem]) -> None:
        protocol = fed.get("protocol")
        key = json.dumps([spec, protocol, facts.num_classes, facts.input_shape], sort_keys=True, default=str)
        if key not in self._built:
            self._built[key] = self._model_error(spec, protocol, facts)
        error = self._built[key]
        if error is not None:
            problems.append((f"{path}.{error.split(':', 1)[0]}", error.split(':', 1)[1].strip()))

    def _model_error(self, spec: dict[str, Any], protocol: dict[str, Any] | None, facts: DatasetFacts) -> str | None:
        shape = "×".join(map(str, facts.input_shape))
        try:
            model = build_component(self.c.models, spec["name"], spec["params"],
                                    {"num_classes": facts.num_classes, "input_shape": facts.input_shape})
        except (ValueError, TypeError, RuntimeError) as exc:
            return f"model: model {spec['name']!r} cannot be built for {facts.num_classes} classes of {shape} " \
                   f"images: {exc}"
        if protocol is None:
            return None
        try:
            build_component(self.c.protocols, protocol["name"], protocol["params"]).server_model(model, 0)
        except (ValueError, TypeError, RuntimeError) as exc:
            return f"federation.protocol: protocol {protocol['name']!r} cannot build its server model from " \
                   f"{spec['name']!r}: {exc}"
        return None

    # -- clients' data

    def corruption(self, spec: dict[str, Any], probe: ImageDataset, path: str, problems: list[Problem]) -> None:
        fn = self.c.corruptions.get(spec["name"])
        try:
            fn(probe.images, torch.Generator().manual_seed(0), **spec["params"])  # ``corrupt``'s call
        except (ValueError, TypeError, RuntimeError) as exc:
            problems.append((path, f"corruption {spec['name']!r} fails on {_shape(probe)} images: {exc}"))

    def data_attack(self, group: dict[str, Any], probe: ImageDataset, path: str, problems: list[Problem]) -> None:
        try:
            attack = build_component(self.c.poisoning_attacks, group["name"], group["params"])
        except Exception:  # the schema check already tried the factory
            return
        if not callable(getattr(attack, "poison", None)):
            return
        try:
            attack.poison(probe, torch.Generator().manual_seed(0))
        except (ValueError, TypeError, IndexError) as exc:
            problems.append((path, f"poisoning attack {group['name']!r} cannot poison {probe.num_classes}-class "
                                   f"{_shape(probe)} data: {exc}"))

    def prior(self, attack: dict[str, Any], path: str, problems: list[Problem]) -> None:
        """A generator-prior attack's generator (``attack.generator(device)``), loaded from its weights."""
        key = _key("prior", attack["name"], attack["params"])
        if key not in self._cached:
            self._cached[key] = None
            self._first[key] = path
            try:
                built = build_component(self.c.inversion_attacks, attack["name"], attack["params"], {"seed": 0})
            except Exception:  # the schema check already tried the factory
                built = None
            load = getattr(built, "generator", None)
            if callable(load):
                try:
                    load(torch.device("cpu"))
                except (FileNotFoundError, CorruptDataError, ValueError) as exc:  # MissingDataError: FileNotFound
                    self._cached[key] = f"{attack['name']!r} cannot load its generator: {_error_text(exc)}"
        error = self._cached[key]
        if error is not None:
            where = f"{path}.params.generator" if "generator" in attack["params"] else path
            first = self._first[key]
            problems.append((where, error if first == path else f"{error.split(':', 1)[0]} (see {first})"))

    # -- aggregation

    def aggregator(self, defense: dict[str, Any], fed: dict[str, Any], uploads: int, path: str,
                   problems: list[Problem]) -> None:
        """Aggregate one round of ``uploads`` random rows with the defense's aggregator (if any)."""
        if defense["name"] == "none":
            return
        context = federation_context(fed, 0, "defense")  # what the run's seed-0 defense gets
        key = _key("aggregator", defense, uploads, context)
        if key not in self._cached:
            self._cached[key] = self._aggregation_error(defense, context, uploads)
        error = self._cached[key]
        if error is not None:
            where = f"{path}.params.f" if error.startswith("f:") and "f" in defense["params"] else path
            problems.append((where, error.removeprefix("f:")))

    def _aggregation_error(self, defense: dict[str, Any], context: dict[str, Any], uploads: int) -> str | None:
        try:
            if defense.get("kind", "privacy") == "aggregator":
                agg = build_component(self.c.aggregators, defense["name"], defense["params"], context)
            else:
                built = build_component(self.c.privacy_defenses, defense["name"], defense["params"], context)
                agg = built.aggregator if isinstance(built, ClientDefense) else None
        except Exception:  # the schema check already tried the factory
            return None
        if agg is None:
            return None
        rows = torch.randn(uploads, PROBE_DIM, generator=torch.Generator().manual_seed(0))
        try:
            result = agg(rows, None, list(range(uploads)))
        except (ValueError, TypeError, RuntimeError, IndexError) as exc:
            return f"{defense['name']!r} cannot aggregate a round of {uploads} uploads: {exc}"
        for name, record in result.info.items():
            if name.endswith("f_clamped") and isinstance(record, dict):
                return (f"f:{record.get('rule', defense['name'])}: f={record.get('f_requested')} is more than a "
                        f"round of {uploads} uploads admits (at most f={record.get('f_used')}: "
                        f"{record.get('condition', 'the rule')}); lower f or raise the clients per round")
        return None


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def _probe(facts: DatasetFacts, name: str) -> ImageDataset:
    """One image of every class, of the dataset's shape: what a data attack or corruption is tried on."""
    c = facts.input_shape[0]
    n = facts.num_classes
    return ImageDataset(name, torch.full((n, *facts.input_shape), 0.5), torch.arange(n), n,
                        Normalization((0.5,) * c, (0.25,) * c))


def _shape(data: ImageDataset) -> str:
    return "×".join(map(str, data.input_shape))


def _error_text(exc: BaseException) -> str:
    """An error's message, its continuation lines indented under the suite problem."""
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, ValueError | FileNotFoundError | OSError):
        text = f"{type(exc).__name__}: {text}"
    return text.replace("\n", "\n      ")
