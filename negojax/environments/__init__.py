"""Negotiation environments: what the seats negotiate over and how a dialogue is rewarded.

`--config.env.name` picks one: a built-in (`deliberation`, the paper's setting and the default;
`resource_split`, a verifiable division of items) or a user's own class by import path
(`my_pkg.my_module:MyEnv`, a subclass of `Environment`) or by the name an installed package
gives it in the `negojax.environments` entry-point group.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect

from negojax.environments.base import Environment
from negojax.environments.deliberation import Deliberation
from negojax.environments.resource_split import ResourceSplit

BUILT_IN = {"deliberation": Deliberation, "resource_split": ResourceSplit}
# Installed packages offer environments here: `name = my_pkg.my_module:MyEnv`.
ENTRY_POINTS = "negojax.environments"


def environment_class(name: str) -> type[Environment]:
    """The class `name` stands for: a built-in, an installed package's entry point of the
    `negojax.environments` group, or `module:Class`; a ValueError in one line when there is
    none."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    module_name, _, attribute = name.partition(":")
    if module_name and attribute:
        return _import_class(name, name)
    installed = importlib.metadata.entry_points(group=ENTRY_POINTS, name=name)
    if installed:
        return _import_class(name, next(iter(installed)).value)
    known = ", ".join([*BUILT_IN, *importlib.metadata.entry_points(group=ENTRY_POINTS).names])
    raise ValueError(f"env.name: {name!r} is neither one of {known} nor an import path like "
                     "my_pkg.my_module:MyEnv")


def _import_class(name: str, path: str) -> type[Environment]:
    """The concrete Environment subclass at `path` ("module:Class"), which `name` stands for."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"env.name: cannot import {module_name!r} ({error}); put it on "
                         "PYTHONPATH or install it") from None
    except Exception as error:  # the user's module failed while running: say how
        text = (str(error).splitlines() or [""])[0]
        raise ValueError(f"env.name: importing {module_name!r} raised {type(error).__name__}: "
                         f"{text}; fix the module") from None
    if not hasattr(module, attribute):
        raise ValueError(f"env.name: module {module_name!r} has no attribute {attribute!r}; "
                         f"name a class it defines")
    cls = getattr(module, attribute)
    if not (isinstance(cls, type) and issubclass(cls, Environment)):
        raise ValueError(f"env.name: {name!r} is not a subclass of "
                         "negojax.environments.Environment")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise ValueError(f"env.name: {name!r} is abstract (it lacks {missing}); name a concrete "
                         "subclass")
    return cls


def make_environment(config) -> Environment:
    """The run's environment, built from its config."""
    return environment_class(config.env.name).from_config(config)


__all__ = ["BUILT_IN", "Deliberation", "Environment", "ResourceSplit", "environment_class",
           "make_environment"]
