"""Negotiation environments: what the seats negotiate over and how a dialogue is rewarded.

`--config.env.name` picks one: a built-in (`deliberation`, the paper's setting and the default;
`resource_split`, a verifiable division of items) or a user's own class by import path
(`my_pkg.my_module:MyEnv`, a subclass of `Environment`).
"""
from __future__ import annotations

import importlib

from negojax.environments.base import Environment
from negojax.environments.deliberation import Deliberation
from negojax.environments.resource_split import ResourceSplit

BUILT_IN = {"deliberation": Deliberation, "resource_split": ResourceSplit}


def environment_class(name: str) -> type[Environment]:
    """The class `name` stands for; a ValueError in one line when there is none."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"env.name: {name!r} is neither a built-in ({', '.join(BUILT_IN)}) nor "
                         "an import path like my_pkg.my_module:MyEnv")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"env.name: cannot import {module_name!r} ({error}); put it on "
                         "PYTHONPATH or install it") from None
    cls = getattr(module, attribute, None)
    if not (isinstance(cls, type) and issubclass(cls, Environment)):
        raise ValueError(f"env.name: {name!r} is not a subclass of "
                         "negojax.environments.Environment")
    return cls


def make_environment(config) -> Environment:
    """The run's environment, built from its config."""
    return environment_class(config.env.name).from_config(config)


__all__ = ["BUILT_IN", "Deliberation", "Environment", "ResourceSplit", "environment_class",
           "make_environment"]
