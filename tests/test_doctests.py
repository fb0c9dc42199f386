"""Every `>>>` example in the installed `speakrl` package runs and holds."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import speakrl

PACKAGES = ("speakrl.pipeline", "speakrl.schemas", "speakrl.prompts", "speakrl.training")


def _modules() -> list[str]:
    # Walked package by package: an editable install maps each one to its own folder (pyproject's package-dir).
    names = {m.name for m in pkgutil.iter_modules(speakrl.__path__, "speakrl.")}
    for package in PACKAGES:
        names.add(package)
        names.update(m.name for m in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."))
    return sorted(names)


MODULES = _modules()


def test_the_namespace_holds_every_package():
    assert set(PACKAGES) | {"speakrl.cli", "speakrl.pipeline.runner", "speakrl.training.rewards"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
