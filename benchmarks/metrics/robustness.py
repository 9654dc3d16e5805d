"""Robustness scores: detection precision/recall per client role, attack success rate.

Ground truth is the simulation's ``History.roles`` (client id → role: ``honest``,
``unreliable`` or the poisoning attack's registry name). What a defense *predicts* for
a client in a round comes from that round's ``RoundRecord``:

- a defense that labels clients (``info["flags"]``: client id → ``sign_flip``,
  ``additive_noise``, ``targeted`` or ``unreliable``, as ``mud_hog`` does) predicts that
  label, and ``honest`` for unlabelled clients;
- any other aggregator predicts ``malicious`` for a client it gave weight 0 and
  ``honest`` otherwise;
- an upload the server rejected (non-finite, malformed) is ``malicious``.

Per role the expected label is the role's type (``label_flip``, ``multi_label_flip``,
``backdoor`` → ``targeted``; other attacks → ``malicious``). Precision of a label is
over every client predicted with it (roles sharing the label count as correct); recall
is over the role's clients. ``malicious`` (all attack roles together) matches any
malicious label. Without typed labels only ``malicious`` and ``honest`` have a
precision; a role's recall is then the fraction of its clients excluded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from fedarena.fl_core.data import ImageDataset
from fedarena.fl_core.evaluation import predictions
from fedarena.fl_core.simulation import History, RoundRecord

HONEST, UNRELIABLE, MALICIOUS = "honest", "unreliable", "malicious"
TYPED_MALICIOUS = ("sign_flip", "additive_noise", "targeted")
ROLE_LABELS: dict[str, str] = {
    "sign_flip": "sign_flip", "additive_noise": "additive_noise",
    "label_flip": "targeted", "multi_label_flip": "targeted", "backdoor": "targeted",
}


@dataclass(frozen=True)
class DetectionScore:
    """Precision/recall of one role (None where undefined), with the counts behind them."""

    precision: float | None
    recall: float | None
    support: int  # (client, round) pairs of this role
    predicted: int  # (client, round) pairs predicted with this role's label

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_label(role: str) -> str:
    """The label a perfect typed detector gives a client of ``role``."""
    if role in (HONEST, UNRELIABLE):
        return role
    return ROLE_LABELS.get(role, MALICIOUS)


def is_malicious_label(label: str) -> bool:
    return label == MALICIOUS or label in TYPED_MALICIOUS


def predicted_labels(record: RoundRecord) -> dict[int, str]:
    """What the defense predicted for each client of one round (see the module docstring)."""
    flags = record.info.get("flags")
    out: dict[int, str] = {}
    for cid in record.clients:
        if cid in record.rejected or str(cid) in record.rejected:
            out[cid] = MALICIOUS
        elif isinstance(flags, Mapping):
            out[cid] = str(flags.get(cid, flags.get(str(cid), HONEST)))
        else:
            weight = record.weights.get(cid, record.weights.get(str(cid), 0.0))  # type: ignore[call-overload]
            out[cid] = MALICIOUS if float(weight) <= 0.0 else HONEST
    return out


def detection_scores(history: History, rounds: Literal["last", "all"] | Sequence[int] = "last"
                     ) -> dict[str, DetectionScore]:
    """Detection precision/recall per role, plus ``malicious`` (all attack roles).

    ``rounds``: ``"last"`` (the final verdict, default), ``"all"``, or round indices;
    counts are pooled over every (client, round) pair of the chosen rounds.
    """
    records = _select(history.rounds, rounds)
    pairs = [(history.roles.get(cid, HONEST), label) for r in records for cid, label in predicted_labels(r).items()]
    typed = any(isinstance(r.info.get("flags"), Mapping) for r in records)
    roles = sorted({role for role, _ in pairs} | set(history.roles.values()))
    out = {role: _role_score(role, pairs, typed) for role in roles}
    bad = [(role not in (HONEST, UNRELIABLE), is_malicious_label(label)) for role, label in pairs]
    out[MALICIOUS] = _score(bad)
    return out


def flatten_scores(scores: Mapping[str, DetectionScore]) -> dict[str, float | None]:
    """``{"<role>_precision": …, "<role>_recall": …}`` for tables and stores."""
    flat: dict[str, float | None] = {}
    for role, s in scores.items():
        flat[f"{role}_precision"], flat[f"{role}_recall"] = s.precision, s.recall
    return flat


def label_flip_asr(model: nn.Module, test_set: ImageDataset, targets: Mapping[int, int],
                   batch_size: int = 1000) -> float | None:
    """Fraction of test samples of a source class predicted as that class's target
    (None when the test set has no source-class sample)."""
    src = torch.tensor(sorted(targets), dtype=test_set.labels.dtype)
    idx = torch.isin(test_set.labels, src).nonzero().squeeze(1)
    if idx.numel() == 0:
        return None
    subset = test_set.subset(idx)
    target = torch.tensor([targets[int(c)] for c in subset.labels])
    return float((predictions(model, subset, batch_size).cpu() == target).float().mean())


def backdoor_asr(model: nn.Module, test_set: ImageDataset, backdoor: Any, batch_size: int = 1000) -> float | None:
    """Fraction of triggered test samples (true class ≠ target) predicted as the target.

    ``backdoor`` needs ``target`` and ``apply_trigger(images)`` (``fedarena.attacks.poisoning.Backdoor``).
    """
    idx = (test_set.labels != backdoor.target).nonzero().squeeze(1)
    if idx.numel() == 0:
        return None
    clean = test_set.subset(idx)
    triggered = ImageDataset(clean.name, backdoor.apply_trigger(clean.images), clean.labels, clean.num_classes,
                             clean.normalization, clean.classes)
    return float((predictions(model, triggered, batch_size).cpu() == backdoor.target).float().mean())


def attack_success_rate(model: nn.Module, test_set: ImageDataset, attack: Any) -> float | None:
    """ASR of a targeted attack object (backdoor or label flip); None for untargeted fedarena.attacks."""
    if callable(getattr(attack, "apply_trigger", None)):
        return backdoor_asr(model, test_set, attack)
    targets = getattr(attack, "targets", None)
    if isinstance(targets, Mapping):
        return label_flip_asr(model, test_set, targets)
    return None


def _role_score(role: str, pairs: list[tuple[str, str]], typed: bool) -> DetectionScore:
    want = expected_label(role)
    if role == HONEST:
        return _score([(r == HONEST, label == HONEST) for r, label in pairs])
    if not typed:  # an untyped defense only says "excluded": recall = fraction of the role excluded
        mine = [label for r, label in pairs if r == role]
        hits = sum(is_malicious_label(label) for label in mine)
        return DetectionScore(None, hits / len(mine) if mine else None, len(mine), hits)

    def match(label: str, expected: str) -> bool:
        return label == expected or (expected == MALICIOUS and is_malicious_label(label))

    support = [match(label, want) for r, label in pairs if r == role]
    predicted = [match(expected_label(r), want) for r, label in pairs if match(label, want)]
    recall = sum(support) / len(support) if support else None
    precision = sum(predicted) / len(predicted) if predicted else None
    return DetectionScore(precision, recall, len(support), len(predicted))


def _score(truth_pred: Iterable[tuple[bool, bool]]) -> DetectionScore:
    tp = fp = fn = 0
    for truth, pred in truth_pred:
        tp += truth and pred
        fp += pred and not truth
        fn += truth and not pred
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    return DetectionScore(precision, recall, tp + fn, tp + fp)


def _select(records: list[RoundRecord], rounds: Literal["last", "all"] | Sequence[int]) -> list[RoundRecord]:
    if rounds == "last":
        return records[-1:]
    if rounds == "all":
        return list(records)
    wanted = set(rounds)
    return [r for r in records if r.round in wanted]
