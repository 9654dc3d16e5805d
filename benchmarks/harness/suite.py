"""Suite files: parse (``yaml.safe_load``, bounded: ``safe_yaml``), validate, expand into runs with stable ids.

A suite is a list of *blocks* under ``runs``; each block is a grid over ``attacks`` ×
``defenses`` × ``seeds`` (and over any value written ``{grid: [...]}``). Everything is
validated before a single run starts, and every problem is reported with the file,
the field path (``runs[2].attacks[0].params.lr``) and the allowed values: first the
schema and each component's parameters (``params.check_params``: types, bounds, required
parameters), then each well-formed block variant with its real sizes (``validate.Preflight``:
data files, index ranges, partition, model, corruption, data attacks, generator priors,
aggregators on a round of the real number of uploads). YAML anchors
(``&name`` / ``<<: *name``) share settings between blocks; put shared anchors under the
top-level ``definitions`` key, which is otherwise ignored. A suite plans at most
``max_runs`` runs (top-level key; default 10,000, ``fedarena run --max-runs N`` overrides
both), counted before anything is expanded. Keys may not repeat, numbers must be finite,
and aliases may expand the document to at most ``safe_yaml.MAX_NODES`` nodes.

The top-level ``engine`` says how runs execute, not what they compute, so it is in no run
id: ``engine: {client_workers: N}`` trains each round's clients in N processes (identical
results; ``fedarena run --client-workers N`` overrides it).

Block fields (defaults in brackets)::

    task: privacy | robustness
    label: str                         [task, dataset and model]
    dataset: NAME | {name, params, split [train], indices [all], size [all]}
    model: NAME | {name, params}       (params are the model's options: dropout, width, …)
    federation: {clients [1], clients_per_round [all], rounds [1], server_lr [1.0],
                 eval_every [1], partition [iid]: NAME | {name, params},
                 protocol [fedavg]: NAME | {name, params}, local: LocalTraining fields}
    attacks: [ATTACK, …]               privacy: inversion attacks {name, params, adaptive [false]};
                                       robustness: none | {name, params, clients | fraction,
                                       update_attack} | {mix: [...]} (several groups at once)
    defenses: [DEFENSE, …]  [none]     privacy: privacy defenses; robustness: aggregators
                                       or privacy defenses; each NAME | {name, params, label}
    seeds: [int, …] | N    [[0]]
    privacy only:    threat_model: {ThreatModel flags}, attacked_clients [all]: N | [ids],
                     attack_round [last]
    robustness only: test_dataset [the dataset's test split],
                     unreliable: {clients | fraction, corruption: NAME | {name, params},
                                  data_fraction [0.5], train_fraction [1.0]}

``federation.protocol`` is an ``fedarena.fl_core.protocol.PROTOCOLS`` name (``hyperfl``, ``fedper``,
…); the block's ``model`` is then the network clients evaluate, and the protocol builds
the server's model from it (HyperFL: a hypernetwork for its feature extractor). Left at
``fedavg`` without params it is not written into the resolved configuration, so run ids
stay those of suites written before protocols existed. A robustness run composes a
protocol with the poisoning attacks and aggregators (they act on its uploads); a privacy
run needs a protocol an inversion attack handles (``fedarena.fl_core.protocol.invertible``: the
whole-model update, or HyperFL's hypernetwork update with its private parameters as unknowns).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedarena.benchmarks.harness.tasks.federation import UnreliableSpec
from fedarena.fl_core.protocol import invertible
from fedarena.fl_core.threat import ThreatModel
from fedarena.fl_core.updates import LocalTraining

from . import grid
from .components import Components, default_components
from .ids import run_id
from .params import Problem, check_params, conform, describe
from .run_count import DEFAULT_MAX_RUNS, planned_runs
from .safe_yaml import YamlInputError, load_yaml, non_finite, read_utf8
from .validate import Preflight

TASKS = ("privacy", "robustness")
SPLITS = ("train", "test")
NONE = "none"
TOP_KEYS = ("suite", "description", "runs", "definitions", "max_runs", "engine")
ENGINE_KEYS = ("client_workers",)
COMMON_KEYS = ("task", "label", "dataset", "model", "federation", "attacks", "defenses", "seeds")
TASK_KEYS = {"privacy": ("threat_model", "attacked_clients", "attack_round"),
             "robustness": ("test_dataset", "unreliable")}
FEDERATION_KEYS = ("clients", "clients_per_round", "rounds", "server_lr", "eval_every", "partition", "protocol",
                   "local")
DEFAULT_PROTOCOL = "fedavg"
DATASET_KEYS = ("name", "params", "split", "indices", "size")
UNRELIABLE_KEYS = ("clients", "fraction", "corruption", "data_fraction", "train_fraction")
# Arguments the harness passes itself; a suite may not set them.
RESERVED = {
    "datasets": ("split", "root"),
    "models": ("num_classes", "input_shape", "seed"),
    "partitioners": ("labels", "num_clients", "seed", "rng", "generator"),
    "corruptions": ("dataset", "data", "images", "kind", "fraction", "seed", "generator"),
    "attacks": ("seed", "update_transform"),
    "defenses": ("seed",),
}
# LocalTraining fields that are numbers, with their bounds: (integer?, minimum, exclusive?).
LOCAL_NUMBERS = {"lr": (False, 0.0, True), "epochs": (True, 1, False), "steps": (True, 1, False),
                 "batch_size": (True, 1, False), "momentum": (False, 0.0, False),
                 "weight_decay": (False, 0.0, False)}
_UNBOUNDED_FEDERATION = {"clients": 2**31, "clients_per_round": None, "rounds": 1}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SuiteError(ValueError):
    """A suite file is malformed; lists every problem as ``path: message``."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = list(problems)
        lines = "\n".join(f"  {path or '(top level)'}: {msg}" for path, msg in self.problems)
        super().__init__(f"{file}: invalid suite ({len(self.problems)} problem"
                         f"{'s' if len(self.problems) != 1 else ''}):\n{lines}")


@dataclass(frozen=True)
class RunSpec:
    """One run: its id, the resolved configuration that was hashed, and display labels."""

    run_id: str
    suite: str
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: tuple[RunSpec, ...]
    path: str = "<string>"
    source: str = ""
    client_workers: int | None = None  # engine.client_workers: an execution setting, in no run id


def load_suite(path: str | Path, components: Components | None = None, *,
               max_runs: int | None = None) -> Suite:
    """Read, validate and expand the suite file at ``path``; raise ``SuiteError`` if malformed.

    ``max_runs`` overrides the run-count limit (the suite's ``max_runs``, else
    ``DEFAULT_MAX_RUNS``), see ``parse_suite``.
    """
    p = Path(path)
    try:
        text = read_utf8(p)
    except YamlInputError as exc:
        raise SuiteError(str(p), exc.problems) from None
    except IsADirectoryError:
        raise SuiteError(str(p), [("", "is a directory, not a suite file; give a .yaml file (or the name of "
                                       "a shipped suite)")]) from None
    except OSError as exc:
        raise SuiteError(str(p), [("", f"cannot read the file: {exc.strerror or exc}")]) from None
    return parse_suite(text, str(p), components, default_name=re.sub(r"[^A-Za-z0-9_.-]", "_", p.stem) or "suite",
                       max_runs=max_runs)


def parse_suite(text: str, file: str = "<string>", components: Components | None = None,
                default_name: str = "suite", *, max_runs: int | None = None) -> Suite:
    """Validate and expand suite YAML ``text``; ``file`` names it in error messages.

    Before anything is validated or expanded: the YAML is read with bounded alias
    expansion and no duplicate keys (``safe_yaml``), every number must be finite, and the
    runs the suite plans are counted (``run_count``) against ``max_runs`` (this argument,
    else the suite's ``max_runs`` field, else ``DEFAULT_MAX_RUNS``).
    """
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SuiteError(file, [("", f"not valid YAML: {exc}")]) from None
    except YamlInputError as exc:
        raise SuiteError(file, exc.problems) from None
    if isinstance(doc, dict):
        bad_numbers = non_finite(doc, skip=("definitions",))
        if bad_numbers:
            raise SuiteError(file, bad_numbers)
    comps = components if components is not None else default_components()
    v = _Validator(comps)
    name, description, blocks = v.top(doc, default_name)
    engine = v.engine(doc)
    limit = max_runs if max_runs is not None else v.max_runs(doc)
    planned = [(index, planned_runs(block)) for index, block in blocks]
    total = sum(n for _, n in planned)
    if total > limit:
        per_block = ", ".join(f"runs[{i}]: {n}" for i, n in planned)
        source = "--max-runs" if max_runs is not None else "max_runs" if "max_runs" in doc else "the default"
        v.add("runs", f"the suite plans {total} runs ({per_block}), more than the limit of {limit} ({source}); "
                      "check the seeds and grids, or raise the limit with 'max_runs: N' at the top of the suite "
                      "or 'fedarena run --max-runs N'")
        raise SuiteError(file, _dedupe(v.problems))
    runs: list[RunSpec] = []
    for index, block in blocks:
        runs.extend(v.block(block, f"runs[{index}]", index, name))
    if v.problems:
        raise SuiteError(file, _dedupe(v.problems))
    unique: dict[str, RunSpec] = {}
    for spec in runs:  # the same configuration reached twice through a grid runs once
        unique.setdefault(spec.run_id, spec)
    return Suite(name, description, tuple(unique.values()), file, text, engine.get("client_workers"))


def attack_label(attack: dict[str, Any]) -> str:
    """A short name for a resolved attack: ``ig(tv=0.1)``, ``sign_flip×5 + alie×2``, ``none``."""
    if "groups" in attack:
        groups = attack["groups"]
        return " + ".join(f"{component_label(g)}"
                          f"{'+' + component_label(g['update_attack']) if g.get('update_attack') else ''}"
                          f"×{g['clients']}" for g in groups) if groups else NONE
    return component_label(attack) + (" [adaptive]" if attack.get("adaptive") else "")


def component_label(component: dict[str, Any]) -> str:
    params = component.get("params") or {}
    if not params:
        return component["name"]
    inner = ", ".join(f"{k}={_short(v)}" for k, v in sorted(params.items()))
    return f"{component['name']}({inner})"


# --------------------------------------------------------------------- validation


class _Validator:
    def __init__(self, comps: Components) -> None:
        self.c = comps
        self.problems: list[Problem] = []
        self.preflight = Preflight(comps)

    def add(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    # -- top level and blocks

    def top(self, doc: Any, default_name: str) -> tuple[str, str, list[tuple[int, dict[str, Any]]]]:
        if not isinstance(doc, dict):
            self.add("", f"a suite must be a mapping with keys {', '.join(TOP_KEYS)}; got {_kind(doc)}")
            return default_name, "", []
        self.keys(doc, "", TOP_KEYS, required=("runs",))
        name = doc.get("suite", default_name)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            self.add("suite", f"must be a name of letters, digits, '_', '-', '.'; got {name!r}")
            name = default_name
        description = doc.get("description", "")
        if not isinstance(description, str):
            self.add("description", f"must be text, got {_kind(description)}")
            description = ""
        blocks = doc.get("runs")
        if "runs" in doc and (not isinstance(blocks, list) or not blocks):
            self.add("runs", f"must be a non-empty list of run blocks, got {_kind(blocks)}")
            return name, description, []
        out = []
        for i, block in enumerate(blocks or []):
            if not isinstance(block, dict):
                self.add(f"runs[{i}]", f"must be a mapping with keys {', '.join(COMMON_KEYS)}; got {_kind(block)}")
            else:
                out.append((i, block))
        return name, description, out

    def max_runs(self, doc: Any) -> int:
        """The suite's own run-count limit (``max_runs``), else ``DEFAULT_MAX_RUNS``."""
        if not isinstance(doc, dict) or "max_runs" not in doc:
            return DEFAULT_MAX_RUNS
        limit = self.number(doc["max_runs"], "max_runs", integer=True, minimum=1)
        return DEFAULT_MAX_RUNS if limit is None else limit

    def engine(self, doc: Any) -> dict[str, Any]:
        """How the suite's runs execute (``engine``): settings that change no result, so no run id."""
        raw = doc.get("engine", {}) if isinstance(doc, dict) else {}
        if not isinstance(raw, dict):
            self.add("engine", f"must be a mapping with keys {', '.join(ENGINE_KEYS)}; got {_kind(raw)}")
            return {}
        if not self.keys(raw, "engine", ENGINE_KEYS):
            return {}
        out = {}
        if "client_workers" in raw:
            out["client_workers"] = self.number(raw["client_workers"], "engine.client_workers", integer=True,
                                                minimum=1)
        return out

    def block(self, raw: dict[str, Any], path: str, index: int, suite: str) -> list[RunSpec]:
        task = raw.get("task")
        if task not in TASKS:
            self.add(f"{path}.task", f"must be one of {', '.join(TASKS)}; got {task!r}")
            return []
        if not self.keys(raw, path, COMMON_KEYS + TASK_KEYS[task], required=("dataset", "model", "attacks")):
            return []
        try:
            n_variants = grid.count(raw)
            if n_variants > grid.MAX_VARIANTS:
                self.add(path, f"expands to {n_variants} variants; the limit is {grid.MAX_VARIANTS}")
                return []
            variants = list(grid.expand(raw, path))
        except ValueError as exc:
            self.add(path, str(exc))
            return []
        specs: list[RunSpec] = []
        for variant, choices in variants:
            before = len(self.problems)
            resolved = self.resolve(variant, path, task)
            if len(self.problems) > before or resolved is None:
                continue
            base, attacks, defenses, seeds = resolved
            label = variant.get("label") or _block_label(base)
            setting = ", ".join(f"{p.removeprefix(path + '.')}={_short(v)}" for p, v in choices
                                if not p.startswith((f"{path}.attacks", f"{path}.defenses", f"{path}.seeds")))
            for attack_cfg, attack_name in attacks:
                for defense_cfg, defense_name in defenses:
                    for seed in seeds:
                        config = {**base, "attack": attack_cfg, "defense": defense_cfg, "seed": seed}
                        meta = {"block": index, "block_label": label, "setting": setting,
                                "attack_label": attack_name, "defense_label": defense_name}
                        specs.append(RunSpec(run_id(config), suite, config, meta))
        return specs

    def resolve(self, b: dict[str, Any], path: str, task: str) -> tuple[Any, ...] | None:
        """Every section is checked even when another one failed, so one pass reports all; a
        variant whose fields are all well formed is then checked with its real sizes (``validate``)."""
        before = len(self.problems)
        label = b.get("label")
        if label is not None and not isinstance(label, str):
            self.add(f"{path}.label", f"must be text, got {_kind(label)}")
        mark = len(self.problems)
        dataset = self.dataset(b["dataset"], f"{path}.dataset", default_split="train")
        clean = {"dataset": len(self.problems) == mark}  # sections without problems, for the real-size checks
        mark = len(self.problems)
        model = self.component(b["model"], f"{path}.model", "models", reserved=RESERVED["models"])
        clean["model"], mark = len(self.problems) == mark, len(self.problems)
        fed = self.federation(b.get("federation", {}), f"{path}.federation")
        seeds = self.seeds(b.get("seeds", [0]), f"{path}.seeds")
        clean["federation"], mark = len(self.problems) == mark, len(self.problems)
        extra = attacks = defenses = None
        if task == "privacy":
            if fed is not None:
                extra = self.privacy_extra(b, path, fed)
                if "protocol" in fed and not invertible(self.c.protocols.get(fed["protocol"]["name"])):
                    self.add(f"{path}.federation.protocol", f"protocol {fed['protocol']['name']!r} does not upload "
                             "the whole-model update an inversion attack observes (its shared part or what it "
                             "uploads differs), and no attack for it exists yet; a privacy task needs fedavg "
                             "or hyperfl")
                    extra = None
            clean["extra"], mark = len(self.problems) == mark, len(self.problems)
            f = fed if fed is not None else _UNBOUNDED_FEDERATION
            attacks = self.alternatives(b["attacks"], f"{path}.attacks", self.inversion_attack)
            clean["attacks"], mark = len(self.problems) == mark, len(self.problems)
            defenses = self.alternatives(b.get("defenses", [NONE]), f"{path}.defenses",
                                         lambda v, p: self.privacy_defense(v, p, f))
            clean["defenses"] = len(self.problems) == mark
        else:
            # With a broken federation section, still check attacks and defenses against a
            # federation too large to trigger count errors; the run list is discarded anyway.
            f = fed if fed is not None else _UNBOUNDED_FEDERATION
            if fed is not None:
                extra = self.robustness_extra(b, path, dataset, fed)
            clean["extra"], mark = len(self.problems) == mark, len(self.problems)
            attacks = self.alternatives(b["attacks"], f"{path}.attacks",
                                        lambda v, p: self.poisoning_attack(v, p, f))
            clean["attacks"], mark = len(self.problems) == mark, len(self.problems)
            defenses = self.alternatives(b.get("defenses", [NONE]), f"{path}.defenses",
                                         lambda v, p: self.robust_defense(v, p, f))
            clean["defenses"] = len(self.problems) == mark
            if fed is not None and extra is not None and attacks:
                unreliable = extra["unreliable"]["clients"] if extra["unreliable"] else 0
                for i, (attack, _) in enumerate(attacks):
                    taken = sum(g["clients"] for g in attack["groups"]) + unreliable
                    if taken > fed["clients"]:
                        self.add(f"{path}.attacks[{i}]", f"{taken} malicious and unreliable clients but only "
                                                         f"{fed['clients']} clients in the federation")
        if clean["dataset"] and clean["federation"] and dataset is not None and fed is not None and seeds is not None:
            def ok(name: str, part: Any) -> Any:
                return part if clean[name] else None

            self.problems += self.preflight.block(path, task, dataset=dataset, fed=fed, seeds=seeds,
                                                  model=ok("model", model), extra=ok("extra", extra),
                                                  attacks=ok("attacks", attacks), defenses=ok("defenses", defenses))
        parts = (dataset, model, fed, seeds, extra, attacks, defenses)
        if any(p is None for p in parts) or len(self.problems) > before:
            return None
        base: dict[str, Any] = {"task": task, "dataset": dataset, "model": model, "federation": fed, **extra}
        return base, attacks, defenses, seeds

    # -- sections

    def dataset(self, value: Any, path: str, default_split: str) -> dict[str, Any] | None:
        spec = {"name": value} if isinstance(value, str) else value
        if not isinstance(spec, dict):
            self.add(path, f"must be a dataset name or a mapping with keys {', '.join(DATASET_KEYS)}; "
                           f"got {_kind(value)}")
            return None
        if not self.keys(spec, path, DATASET_KEYS, required=("name",)):
            return None
        if not self.known(spec["name"], f"{path}.name", self.c.datasets):
            return None
        params, problems = check_params(self.c.datasets, spec["name"], spec.get("params"), f"{path}.params",
                                        reserved=RESERVED["datasets"])
        self.problems += problems
        split = spec.get("split", default_split)
        if split not in SPLITS:
            self.add(f"{path}.split", f"must be one of {', '.join(SPLITS)}; got {split!r}")
        indices = spec.get("indices")
        if indices is not None and not (isinstance(indices, list) and indices
                                        and all(_is_int(i) and i >= 0 for i in indices)):
            self.add(f"{path}.indices", f"must be a non-empty list of sample indices (ints >= 0); got {indices!r}")
        elif indices is not None and len(set(indices)) != len(indices):
            self.add(f"{path}.indices", "must not repeat an index")
        size = self.number(spec.get("size"), f"{path}.size", integer=True, minimum=1, nullable=True)
        if indices is not None and size is not None:
            self.add(path, "give either 'indices' or 'size', not both")
        return {"name": spec["name"], "params": params, "split": split, "indices": indices, "size": size}

    def component(self, value: Any, path: str, kind: str, *, reserved: Sequence[str] = (),
                  extra_keys: Sequence[str] = (), trial: bool = False,
                  context: dict[str, Any] | None = None) -> dict[str, Any] | None:
        registry = getattr(self.c, kind)
        spec = {"name": value} if isinstance(value, str) else value
        allowed = ("name", "params", *extra_keys)
        if not isinstance(spec, dict):
            self.add(path, f"must be a {registry.kind} name or a mapping with keys {', '.join(allowed)}; "
                           f"got {_kind(value)}")
            return None
        if not self.keys(spec, path, allowed, required=("name",)):
            return None
        if not self.known(spec["name"], f"{path}.name" if isinstance(value, dict) else path, registry):
            return None
        params, problems = check_params(registry, spec["name"], spec.get("params"), f"{path}.params",
                                        reserved=reserved, trial=trial, context=context)
        self.problems += problems
        return {"name": spec["name"], "params": params}

    def federation(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping with keys {', '.join(FEDERATION_KEYS)}; got {_kind(value)}")
            return None
        if not self.keys(value, path, FEDERATION_KEYS):
            return None
        clients = self.number(value.get("clients", 1), f"{path}.clients", integer=True, minimum=1)
        per_round = self.number(value.get("clients_per_round"), f"{path}.clients_per_round", integer=True,
                                minimum=1, nullable=True)
        if clients is not None and per_round is not None and per_round > clients:
            self.add(f"{path}.clients_per_round", f"must be <= clients ({clients}); got {per_round}")
        rounds = self.number(value.get("rounds", 1), f"{path}.rounds", integer=True, minimum=1)
        server_lr = self.number(value.get("server_lr", 1.0), f"{path}.server_lr", minimum=0.0, exclusive=True)
        eval_every = self.number(value.get("eval_every", 1), f"{path}.eval_every", integer=True, minimum=1)
        part = self.component(value.get("partition", "iid"), f"{path}.partition", "partitioners",
                              reserved=RESERVED["partitioners"])
        protocol = self.component(value.get("protocol", DEFAULT_PROTOCOL), f"{path}.protocol", "protocols", trial=True)
        local = self.local(value.get("local", {}), f"{path}.local")
        if None in (clients, rounds, server_lr, eval_every, part, protocol, local):
            return None
        out = {"clients": clients, "clients_per_round": per_round, "rounds": rounds, "server_lr": server_lr,
               "eval_every": eval_every, "partition": part, "local": local}
        if protocol != {"name": DEFAULT_PROTOCOL, "params": {}}:  # the default keeps earlier run ids
            out["protocol"] = protocol
        return out

    def local(self, value: Any, path: str) -> dict[str, Any] | None:
        fields = {f.name: f for f in dataclasses.fields(LocalTraining)}
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping with keys {', '.join(fields)}; got {_kind(value)}")
            return None
        if not self.keys(value, path, tuple(fields)):
            return None
        defaults = dataclasses.asdict(LocalTraining())
        out = dict(defaults)
        hints = _dataclass_hints(LocalTraining)
        ok = True
        for key, raw in value.items():
            where = f"{path}.{key}"
            if key in LOCAL_NUMBERS:
                integer, minimum, exclusive = LOCAL_NUMBERS[key]
                num = self.number(raw, where, integer=integer, minimum=minimum, exclusive=exclusive,
                                  nullable=defaults[key] is None)
                ok &= num is not None or (raw is None and defaults[key] is None)
                out[key] = num
                continue
            good, conv = conform(hints.get(key, Any), raw)
            if not good:
                self.add(where, f"must be {describe(hints[key])}; got {raw!r}")
                ok = False
            out[key] = conv
        if not ok:
            return None
        try:
            LocalTraining(**out)
        except (ValueError, TypeError) as exc:
            self.add(path, str(exc))
            return None
        return out

    def seeds(self, value: Any, path: str) -> list[int] | None:
        if _is_int(value) and value >= 1:
            return list(range(value))
        if isinstance(value, list) and value and all(_is_int(s) and s >= 0 for s in value):
            if len(set(value)) != len(value):
                self.add(path, f"must not repeat a seed; got {value}")
                return None
            return list(value)
        self.add(path, f"must be a non-empty list of ints >= 0, or a count N (seeds 0..N-1); got {value!r}")
        return None

    def privacy_extra(self, b: dict[str, Any], path: str, fed: dict[str, Any]) -> dict[str, Any] | None:
        flags = [f.name for f in dataclasses.fields(ThreatModel)]
        tm_raw = b.get("threat_model", {})
        threat = dataclasses.asdict(ThreatModel())
        if not isinstance(tm_raw, dict):
            self.add(f"{path}.threat_model", f"must be a mapping of flags ({', '.join(flags)}); got {_kind(tm_raw)}")
            return None
        if not self.keys(tm_raw, f"{path}.threat_model", tuple(flags)):
            return None
        for key, flag in tm_raw.items():
            if not isinstance(flag, bool):
                self.add(f"{path}.threat_model.{key}", f"must be true or false; got {flag!r}")
            threat[key] = flag
        clients = fed["clients"]
        attacked = b.get("attacked_clients", "all")
        if attacked == "all":
            ids = list(range(clients))
        elif _is_int(attacked) and 1 <= attacked <= clients:
            ids = list(range(attacked))
        elif isinstance(attacked, list) and attacked and all(_is_int(i) and 0 <= i < clients for i in attacked):
            ids = sorted(set(attacked))
        else:
            self.add(f"{path}.attacked_clients", f"must be 'all', a count in 1..{clients} or a list of client "
                                                 f"ids in 0..{clients - 1}; got {attacked!r}")
            return None
        rounds = fed["rounds"]
        attack_round = self.number(b.get("attack_round", rounds - 1), f"{path}.attack_round", integer=True,
                                   minimum=0, maximum=rounds - 1)
        if attack_round is None:
            return None
        return {"threat_model": threat, "attacked_clients": ids, "attack_round": attack_round}

    def robustness_extra(self, b: dict[str, Any], path: str, dataset: dict[str, Any] | None,
                         fed: dict[str, Any]) -> dict[str, Any] | None:
        test_raw = b.get("test_dataset")
        if test_raw is None and dataset is None:
            test = None
        elif test_raw is None:
            test = {**dataset, "split": "test", "indices": None, "size": None}
        else:
            test = self.dataset(test_raw, f"{path}.test_dataset", default_split="test")
        unreliable = None
        raw = b.get("unreliable")
        upath = f"{path}.unreliable"
        if raw is not None:
            if not isinstance(raw, dict):
                self.add(upath, f"must be a mapping with keys {', '.join(UNRELIABLE_KEYS)}; got {_kind(raw)}")
                return None
            if not self.keys(raw, upath, UNRELIABLE_KEYS, required=("corruption",)):
                return None
            count = self.client_count(raw, upath, fed["clients"])
            corruption = self.component(raw["corruption"], f"{upath}.corruption", "corruptions",
                                        reserved=RESERVED["corruptions"])
            defaults = {f.name: f.default for f in dataclasses.fields(UnreliableSpec)}
            fractions = {key: self.number(raw.get(key, defaults[key]), f"{upath}.{key}", minimum=0.0,
                                          exclusive=key == "train_fraction", maximum=1.0)
                         for key in ("data_fraction", "train_fraction")}
            if count is None or corruption is None or None in fractions.values():
                return None
            unreliable = {"clients": count, "corruption": corruption, **fractions}
        if test is None:
            return None
        return {"test_dataset": test, "unreliable": unreliable}

    def client_count(self, spec: dict[str, Any], path: str, total: int) -> int | None:
        if ("clients" in spec) == ("fraction" in spec):
            self.add(path, "give exactly one of 'clients' (a count) or 'fraction' (of the federation's clients)")
            return None
        if "clients" in spec:
            return self.number(spec["clients"], f"{path}.clients", integer=True, minimum=1, maximum=total)
        frac = self.number(spec["fraction"], f"{path}.fraction", minimum=0.0, exclusive=True, maximum=1.0)
        if frac is None:
            return None
        count = round(frac * total)
        if count < 1:
            self.add(f"{path}.fraction", f"{frac} of {total} clients rounds to no client at all")
            return None
        return count

    # -- attacks and defenses

    def alternatives(self, value: Any, path: str, one: Any) -> list[tuple[dict[str, Any], str]] | None:
        if not isinstance(value, list) or not value:
            self.add(path, f"must be a non-empty list; got {_kind(value)}")
            return None
        out = []
        for i, item in enumerate(value):
            resolved = one(item, f"{path}[{i}]")
            if resolved is not None:
                label = item.get("label") if isinstance(item, dict) else None
                if label is not None and not isinstance(label, str):
                    self.add(f"{path}[{i}].label", f"must be text, got {_kind(label)}")
                out.append((resolved, label or attack_label(resolved)))
        return out if len(out) == len(value) else None

    def inversion_attack(self, value: Any, path: str) -> dict[str, Any] | None:
        comp = self.component(value, path, "inversion_attacks", extra_keys=("label", "adaptive"), trial=True,
                              reserved=RESERVED["attacks"], context={"seed": 0})
        adaptive = value.get("adaptive", False) if isinstance(value, dict) else False
        if not isinstance(adaptive, bool):
            self.add(f"{path}.adaptive", f"must be true or false; got {adaptive!r}")
            return None
        return None if comp is None else {**comp, "adaptive": adaptive}

    def privacy_defense(self, value: Any, path: str, fed: dict[str, Any]) -> dict[str, Any] | None:
        if _is_none(value):
            return {"name": NONE, "params": {}}
        return self.component(value, path, "privacy_defenses", extra_keys=("label",), trial=True,
                              reserved=RESERVED["defenses"], context=_fed_context(fed))

    def poisoning_attack(self, value: Any, path: str, fed: dict[str, Any]) -> dict[str, Any] | None:
        if _is_none(value):
            return {"groups": []}
        if isinstance(value, dict) and "mix" in value:
            if not self.keys(value, path, ("mix", "label")):
                return None
            mix = value["mix"]
            if not isinstance(mix, list) or not mix:
                self.add(f"{path}.mix", f"must be a non-empty list of attacks; got {_kind(mix)}")
                return None
            groups = [self.poisoning_group(g, f"{path}.mix[{i}]", fed) for i, g in enumerate(mix)]
            if None in groups:
                return None
            names = [g["name"] for g in groups]  # type: ignore[index]
            if len(set(names)) != len(names):
                self.add(f"{path}.mix", f"each attack may appear once (its name is the clients' role); got {names}")
                return None
            return {"groups": groups}
        group = self.poisoning_group(value, path, fed, extra_keys=("label",))
        return None if group is None else {"groups": [group]}

    def poisoning_group(self, value: Any, path: str, fed: dict[str, Any],
                        extra_keys: Sequence[str] = ()) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.add(path, "must be a mapping {name, params, clients | fraction, update_attack} (or 'none' / "
                           f"{{mix: [...]}}); got {_kind(value)}")
            return None
        own = ("clients", "fraction", "update_attack")
        comp = self.component({k: v for k, v in value.items() if k not in own}, path, "poisoning_attacks",
                              extra_keys=extra_keys, trial=True, reserved=RESERVED["attacks"],
                              context=_fed_context(fed))
        count = self.client_count(value, path, fed["clients"])
        extra = None
        if value.get("update_attack") is not None:  # e.g. backdoor data + model_replacement scaling
            extra = self.component(value["update_attack"], f"{path}.update_attack", "poisoning_attacks", trial=True,
                                   reserved=RESERVED["attacks"], context=_fed_context(fed))
            if extra is None:
                return None
        if comp is None or count is None:
            return None
        return {**comp, "clients": count, "update_attack": extra}

    def robust_defense(self, value: Any, path: str, fed: dict[str, Any]) -> dict[str, Any] | None:
        if _is_none(value):
            return {"name": NONE, "params": {}, "kind": "aggregator"}
        name = value if isinstance(value, str) else value.get("name") if isinstance(value, dict) else None
        in_agg, in_priv = name in self.c.aggregators, name in self.c.privacy_defenses
        if in_agg and in_priv:
            self.add(path, f"{name!r} is both an aggregator and a privacy defense; rename one of them")
            return None
        kind = "privacy_defenses" if in_priv else "aggregators"
        if not (in_agg or in_priv) and isinstance(name, str):
            known = sorted(set(self.c.aggregators.names()) | set(self.c.privacy_defenses.names()) | {NONE})
            self.add(f"{path}.name" if isinstance(value, dict) else path,
                     f"unknown defense {name!r}; known: {', '.join(known)}")
            return None
        comp = self.component(value, path, kind, extra_keys=("label",), trial=True, reserved=RESERVED["defenses"],
                              context=_fed_context(fed))
        if comp is None:
            return None
        return {**comp, "kind": "privacy" if in_priv else "aggregator"}

    # -- primitives

    def keys(self, mapping: dict[str, Any], path: str, allowed: Iterable[str], required: Iterable[str] = ()) -> bool:
        allowed = tuple(allowed)
        ok = True
        for key in mapping:
            if key not in allowed:
                self.add(f"{path}.{key}" if path else str(key), f"unknown field; allowed: {', '.join(allowed)}")
                ok = False
        for key in required:
            if key not in mapping:
                self.add(f"{path}.{key}" if path else key, "is required")
                ok = False
        return ok

    def known(self, name: Any, path: str, registry: Any) -> bool:
        if isinstance(name, str) and name in registry:
            return True
        known = ", ".join(registry.names()) or "(none registered)"
        self.add(path, f"unknown {registry.kind} {name!r}; known: {known}")
        return False

    def number(self, value: Any, path: str, *, integer: bool = False, minimum: float | None = None,
               exclusive: bool = False, maximum: float | None = None, nullable: bool = False) -> Any:
        if value is None and nullable:
            return None
        kind = "an int" if integer else "a number"
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if exclusive else '>='} {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        want = f"{kind}{' ' + ' and '.join(bounds) if bounds else ''}{' or null' if nullable else ''}"
        good_type = _is_int(value) if integer else isinstance(value, int | float) and not isinstance(value, bool)
        if not good_type or (minimum is not None and (value <= minimum if exclusive else value < minimum)) or (
                maximum is not None and value > maximum) or value != value:
            self.add(path, f"must be {want}; got {value!r}")
            return None
        return value if integer else float(value)


def _fed_context(fed: dict[str, Any]) -> dict[str, Any]:
    """Values a factory may take from the federation, matched by parameter name (the run
    passes the same names, with the run's seed, see ``tasks.common.federation_context``)."""
    per_round = fed["clients_per_round"] or fed["clients"]
    return {"num_clients": fed["clients"], "clients_per_round": per_round, "rounds": fed["rounds"],
            "planned_rounds": fed["rounds"], "seed": 0}


def _block_label(base: dict[str, Any]) -> str:
    return f"{base['task']}: {base['dataset']['name']} / {component_label(base['model'])}"


def _dataclass_hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _is_none(value: Any) -> bool:
    return value is None or value == NONE or (isinstance(value, dict) and value.get("name") == NONE
                                              and not value.get("params"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 50 else text[:47] + '...'}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return str(value.get("name", value))
    return str(value)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))
