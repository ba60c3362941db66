"""The core's public names: ``__all__`` on its packages and modules, kept true.

Proves: ``distro`` and ``distro.testing`` list exactly their submodules, and their docstrings name each
one; every module of the core declares ``__all__``, and every name in it exists; every public class has a
docstring of its own (not the signature a dataclass fills in).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import distro
import distro.testing

PACKAGES = [distro, distro.testing]


def _modules() -> list[ModuleType]:
    found = []
    for package in PACKAGES:
        for info in pkgutil.iter_modules(package.__path__):
            if not info.ispkg:
                found.append(importlib.import_module(f"{package.__name__}.{info.name}"))
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_package_lists_its_submodules(package: ModuleType) -> None:
    submodules = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
    assert sorted(package.__all__) == submodules
    doc = package.__doc__ or ""
    assert [name for name in submodules if name not in doc] == []


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_module_all_names_exist(module: ModuleType) -> None:
    names = module.__all__
    assert names, f"{module.__name__} declares no public names"
    assert [name for name in names if not hasattr(module, name)] == []
    assert len(set(names)) == len(names)


def _written_docstring(cls: type) -> bool:
    """True when ``cls`` has a docstring of its own (not the signature a dataclass fills in)."""
    doc = (cls.__doc__ or "").strip()
    return bool(doc) and not doc.startswith(f"{cls.__name__}(")


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_public_classes_have_docstrings(module: ModuleType) -> None:
    undocumented = [
        name
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and value.__module__ == module.__name__
        and not name.startswith("_")
        and not _written_docstring(value)
    ]
    assert undocumented == []
