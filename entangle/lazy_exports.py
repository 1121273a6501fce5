"""Package names that load on first access (PEP 562 module ``__getattr__``).

A package lists its public names and the module defining each; importing the package stays
light (``import entangle`` needs only torch and numpy, the CLI's options need no analysis or
scipy) and each name's module is imported when the name is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``(__getattr__, __dir__)`` pair for ``package``.

    ``exports`` maps a public name to its module; a name equal to its module's last component
    (``"metrics": "entangle.metrics"``) is the module itself. A loaded name is stored in the
    package's ``namespace`` so later look-ups skip ``__getattr__``; ``__dir__`` lists the
    namespace's ``__all__``.
    """

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        loaded = importlib.import_module(module)
        value = loaded if module.rsplit(".", 1)[-1] == name else getattr(loaded, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return namespace["__all__"]

    return __getattr__, __dir__
