"""Sub-packages that are also the API call of their name: ``cytoedge.train(config)``, ``cytoedge.convert(...)``.

Importing ``cytoedge.train.cli`` binds the sub-package to the attribute ``cytoedge.train``
(Python's import system does that for every sub-module), so a plain function of that name
would be replaced by the first such import. The sub-package itself is made callable instead.
"""
from __future__ import annotations

import sys
import types
from typing import Any


class EntryModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from cytoedge import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Give the module ``module_name`` (a sub-package's ``__name__``) the call of :mod:`cytoedge.api`'s function."""
    sys.modules[module_name].__class__ = EntryModule
