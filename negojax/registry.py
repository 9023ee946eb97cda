"""Extension points that register rather than branch on strings.

A `Registry` maps the names one config key accepts to implementations: the built-ins, named by
import path so that a registry imports nothing until a name is used (no import cycles, no
start-up cost); anything registered at run time (`REGISTRY.register("name", obj)`, or as a
decorator); an installed package's entry point when the registry names a group; and any
`pkg.module:attribute` import path, so a user's own entry needs no registration at all. Adding
one is a module and its test; the config layer validates a name by resolving it, so a name
that does not resolve is one line naming the key, before any model loads.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any, Callable, Optional


class Registry:
    """The implementations one config key (`key`, e.g. "rl.credit") names. `check(obj)`, when
    given, raises a one-line ValueError if a resolved object cannot serve (not a subclass, say)."""

    def __init__(self, key: str, builtins: dict[str, str], *,
                 entry_points: Optional[str] = None,
                 check: Optional[Callable[[str, Any], None]] = None):
        self.key = key
        self._paths = dict(builtins)  # name -> "module:attribute", imported on first use
        self._registered: dict[str, Any] = {}
        self.entry_points = entry_points
        self._check = check

    def register(self, name: str, obj: Any = None):
        """Register `obj` under `name` (a decorator when `obj` is left out)."""
        if obj is None:
            return lambda target: self.register(name, target)
        self._registered[name] = obj
        return obj

    def names(self) -> tuple[str, ...]:
        """The names known without an import path: built-ins, registered, installed."""
        installed = (importlib.metadata.entry_points(group=self.entry_points).names
                     if self.entry_points else ())
        return tuple(dict.fromkeys([*self._paths, *self._registered, *sorted(installed)]))

    def __iter__(self):
        return iter(self.names())

    def get(self, name: str) -> Any:
        """The implementation `name` stands for; a one-line ValueError naming the key and the
        choices when there is none."""
        if not isinstance(name, str):
            raise ValueError(f"{self.key}: {name!r} is not a name; use one of "
                             f"{', '.join(self.names())} or an import path like "
                             "my_pkg.my_module:thing")
        if name in self._registered:
            return self._registered[name]
        if name in self._paths:
            return self._resolve(name, self._paths[name])
        if ":" in name:
            return self._resolve(name, name)
        if self.entry_points:
            installed = importlib.metadata.entry_points(group=self.entry_points, name=name)
            if installed:
                return self._resolve(name, next(iter(installed)).value)
        raise ValueError(f"{self.key}: {name!r} is not one of {', '.join(self.names())}, nor "
                         "an import path like my_pkg.my_module:thing")

    def _resolve(self, name: str, path: str) -> Any:
        module_name, _, attribute = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"{self.key}: cannot import {module_name!r} ({error}); put it on "
                             "PYTHONPATH or install it") from None
        except Exception as error:  # the module's own code failed: say how
            text = (str(error).splitlines() or [""])[0]
            raise ValueError(f"{self.key}: importing {module_name!r} raised "
                             f"{type(error).__name__}: {text}; fix the module") from None
        if not attribute or not hasattr(module, attribute):
            raise ValueError(f"{self.key}: module {module_name!r} has no attribute "
                             f"{attribute!r}; name one it defines")
        obj = getattr(module, attribute)
        if self._check is not None:
            self._check(name, obj)
        return obj
