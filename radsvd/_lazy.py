"""Lazy re-exports for package ``__init__`` modules (PEP 562 module ``__getattr__``).

``import radsvd`` and ``radsvd --help`` load no numba, scipy, finufft or pandas: a package
names what it re-exports and from which module, and the module is imported on first access
of the name (then cached in the package's namespace).
"""

from __future__ import annotations

import importlib
import importlib.util


def exports(package: str, table: dict[str, tuple[str, ...]], namespace: dict):
    """``__getattr__`` and ``__dir__`` for ``package`` re-exporting, for each module of
    ``table`` (``{module: names}``), those names; other names resolve to the package's
    submodules (``radsvd.images.align`` without importing it first, as before)."""
    where = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}"):
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__


class LazyModule:
    """A module imported on first attribute access: ``pd = LazyModule("pandas")`` at the top
    of a module whose functions use ``pd.DataFrame`` only when called (annotations stay
    strings under ``from __future__ import annotations``).  Not registered in sys.modules."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"
