"""The backbone registry: builders looked up by name instead of an if-chain (timm style).

A module that defines a backbone registers its builder where it defines it, with
:func:`register_backbone`:

- an exact name, ``@register_backbone("digits-mlp")`` on a class or function called as
  ``builder(**kw)``;
- a family, ``@register_backbone("vit-*", members=VIT_CONFIGS)``: every name in ``members``
  (read each time, so the family's own table stays the one list) is built by
  ``builder(name, **kw)``; each member must start with the prefix before the ``*``.

``entangle.models`` imports the modules holding the built-in backbones, so importing any
``entangle.models`` module fills the registry; none of them imports an optional dependency
(timm is imported inside the builder that needs it). :func:`build_backbone` builds by name,
:func:`backbone_names` lists what can be built; the three are the methods of one
:class:`BackboneRegistry` (a fresh one is what tests register into). See
docs/architecture.md ("where to add a backbone").
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from entangle.errors import EntangleTypeError, EntangleValueError


@dataclass(frozen=True)
class _Family:
    prefix: str
    members: Collection[str]
    builder: Callable


class BackboneRegistry:
    """Builders by exact name and by family (``"vit-*"`` with its members)."""

    def __init__(self) -> None:
        self._exact: dict[str, Callable] = {}
        self._families: dict[str, _Family] = {}

    def register(self, name: str, *, members: Collection[str] | None = None):
        """Decorator: register the decorated builder under ``name`` and return it unchanged.

        Args:
            name: an exact name (``"digits-mlp"``) or a family pattern ``"prefix*"``
                (``"vit-*"``), which needs ``members``.
            members: the family's names (a collection read at every look-up, e.g. the
                family's table of architectures); only with a family pattern.

        Raises:
            EntangleValueError: a name or family registered twice, an exact name that a
                family already builds (or the reverse), a member outside its prefix, a
                pattern without members or members without a pattern.
        """
        if not isinstance(name, str) or not name.strip("*"):
            raise EntangleValueError(f"a backbone name must be a non-empty string, got {name!r}")
        family = name.endswith("*")
        if family != (members is not None):
            raise EntangleValueError(
                f"backbone {name!r}: a family pattern 'prefix*' needs members=, an exact name "
                "takes none"
            )

        def register(builder: Callable) -> Callable:
            if family:
                self._add_family(_Family(name[:-1], members, builder))
            else:
                self._add_exact(name, builder)
            return builder

        return register

    def _add_exact(self, name: str, builder: Callable) -> None:
        if name in self._exact:
            raise EntangleValueError(f"backbone {name!r} is registered twice")
        owner = self._family_of(name)
        if owner is not None:
            raise EntangleValueError(
                f"backbone {name!r} is already a member of the family {owner.prefix + '*'!r}"
            )
        self._exact[name] = builder

    def _add_family(self, fam: _Family) -> None:
        pattern = fam.prefix + "*"
        if pattern in self._families:
            raise EntangleValueError(f"backbone family {pattern!r} is registered twice")
        outside = sorted(m for m in fam.members if not m.startswith(fam.prefix))
        if outside:
            raise EntangleValueError(
                f"backbone family {pattern!r}: members {outside} do not start with {fam.prefix!r}"
            )
        taken = sorted(set(fam.members) & set(self.names()))
        if taken:
            raise EntangleValueError(
                f"backbone family {pattern!r}: {taken} already registered under another builder"
            )
        self._families[pattern] = fam

    def _family_of(self, name: str) -> _Family | None:
        for fam in self._families.values():
            if name.startswith(fam.prefix) and name in fam.members:
                return fam
        return None

    def names(self) -> list[str]:
        """Every name :meth:`build` builds (exact names and family members), sorted."""
        names = set(self._exact)
        for fam in self._families.values():
            names.update(fam.members)
        return sorted(names)

    def build(self, name: str, **kw):
        """Build a registered backbone by name.

        Args:
            name: one of :meth:`names` (``"digits-mlp"``: ``ResidualMLP``, pass ``in_dim``
                for inputs other than 8x8 digits; ``"vit-..."``:
                ``entangle.models.vit.build_vit``, e.g. ``img_size``, ``backend``).
            **kw: the builder's arguments.

        Returns:
            an ``nn.Module`` following the block protocol (``entangle.models.backbones``).

        Raises:
            EntangleTypeError: ``name`` is not a string.
            EntangleValueError: an unknown name; one line listing the known ones.
        """
        if not isinstance(name, str):
            raise EntangleTypeError(f"backbone name must be a string, got {type(name).__name__}")
        if name in self._exact:
            return self._exact[name](**kw)
        fam = self._family_of(name)
        if fam is not None:
            return fam.builder(name, **kw)
        raise EntangleValueError(f"unknown backbone {name!r}; known: {', '.join(self.names())}")


# the registry entangle.models fills with the built-in backbones
BACKBONE_REGISTRY = BackboneRegistry()
register_backbone = BACKBONE_REGISTRY.register
build_backbone = BACKBONE_REGISTRY.build
backbone_names = BACKBONE_REGISTRY.names
