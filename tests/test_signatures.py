"""Every registered attack and defense shows its options: ``help()`` and IDEs read the
signature, so no component may hide them behind ``**kwargs`` (issue #18)."""

from __future__ import annotations

import dataclasses
import inspect
import pydoc

import pytest

from fedarena import (
    attacks,  # noqa: F401  (registers every attack)
    defenses,  # noqa: F401  (registers every defense)
)
from fedarena.attacks.registry import INVERSION_ATTACKS, POISONING_ATTACKS
from fedarena.defenses.registry import AGGREGATORS, PRIVACY_DEFENSES

REGISTRIES = (INVERSION_ATTACKS, POISONING_ATTACKS, PRIVACY_DEFENSES, AGGREGATORS)
ENTRIES = [(reg, name) for reg in REGISTRIES for name in reg.names()]


@pytest.mark.parametrize(("registry", "name"), ENTRIES, ids=[f"{r.kind}:{n}" for r, n in ENTRIES])
def test_no_component_hides_its_options(registry, name):
    sig = inspect.signature(registry.get(name))
    hidden = [p.name for p in sig.parameters.values() if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    assert not hidden, f"{registry.kind} {name!r} takes {hidden}: its options are invisible to help()"
    untyped = [p.name for p in sig.parameters.values() if p.annotation is p.empty]
    assert not untyped, f"{registry.kind} {name!r}: parameters without a type {untyped}"


@pytest.mark.parametrize("name", INVERSION_ATTACKS.names())
def test_inversion_signature_is_the_settings_it_builds(name):
    """The published defaults are the ones the attack really uses (they cannot drift apart)."""
    cls = INVERSION_ATTACKS.get(name)
    sig = inspect.signature(cls)
    expected = [f.name for f in dataclasses.fields(cls.settings_class) if f.name not in cls.forced]
    assert list(sig.parameters) == expected
    built = cls().settings  # every default, as the attack resolves it
    for param in sig.parameters.values():
        assert param.kind is param.KEYWORD_ONLY
        assert getattr(built, param.name) == param.default, (name, param.name)
    assert not set(cls.forced) & set(sig.parameters)


def test_idlg_shows_its_own_batch_label_default():
    sig = inspect.signature(INVERSION_ATTACKS.get("idlg"))
    assert sig.parameters["batch_labels"].default == "bias"
    assert "labels" not in sig.parameters  # forced to analytic recovery
    assert inspect.signature(INVERSION_ATTACKS.get("dlg")).parameters["batch_labels"].default == "optimize"
    assert "iterations: int = 300" in pydoc.render_doc(INVERSION_ATTACKS.get("dlg"))  # what help() prints
