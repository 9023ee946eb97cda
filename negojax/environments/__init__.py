"""Negotiation environments: what the seats negotiate over and how a dialogue is rewarded.

`--config.env.name` picks one: a built-in (`deliberation`, the paper's setting and the default;
`resource_split`, a verifiable division of items) or a user's own class by import path
(`my_pkg.my_module:MyEnv`, a subclass of `Environment`) or by the name an installed package
gives it in the `negojax.environments` entry-point group.
"""
from __future__ import annotations

import inspect

from negojax.environments.base import Environment
from negojax.environments.deliberation import Deliberation
from negojax.environments.resource_split import ResourceSplit
from negojax.registry import Registry


def _concrete_environment(name: str, cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Environment)):
        raise ValueError(f"env.name: {name!r} is not a subclass of "
                         "negojax.environments.Environment")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise ValueError(f"env.name: {name!r} is abstract (it lacks {missing}); name a concrete "
                         "subclass")


# Installed packages offer environments in the entry-point group `negojax.environments`:
# `name = my_pkg.my_module:MyEnv`.
ENVIRONMENTS = Registry("env.name", {
    "deliberation": "negojax.environments.deliberation:Deliberation",
    "resource_split": "negojax.environments.resource_split:ResourceSplit",
}, entry_points="negojax.environments", check=_concrete_environment)


def environment_class(name: str) -> type[Environment]:
    """The class `name` stands for: a built-in, an installed package's entry point of the
    `negojax.environments` group, or `module:Class`; a ValueError in one line when there is
    none."""
    return ENVIRONMENTS.get(name)


def make_environment(config) -> Environment:
    """The run's environment, built from its config."""
    return environment_class(config.env.name).from_config(config)


__all__ = ["Deliberation", "ENVIRONMENTS", "Environment", "ResourceSplit", "environment_class",
           "make_environment"]
