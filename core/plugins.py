"""Plugins chosen by a config section's ``type``: one registry style for every kind.

Detectors, camera rules and sensor rules are each a :class:`Plugins`
registry. A plugin is one module holding its config (a :class:`Section`
subclass with a ``type: Literal["..."]`` field) and what it builds; the
module registers the pair with a decorator::

    @CAMERA_RULES.register(ParkingRuleConfig)
    class ParkingRule(StillObjectsRule): ...

The kind's registry module imports every plugin module (an explicit list)
and derives from the registrations, so they can never disagree:

- :meth:`Plugins.config_union`, the pydantic type of a ``type``-tagged
  section (an unknown ``type`` is an error listing the known ones);
- :attr:`Plugins.tags`, the known ``type`` values;
- :meth:`Plugins.build`, the factory lookup by the config's class.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Annotated, Any, Concatenate, Generic, ParamSpec, TypeVar

from pydantic import BaseModel, Discriminator, Tag

C = TypeVar("C", bound=BaseModel)
P = TypeVar("P")
A = ParamSpec("A")
F = TypeVar("F", bound=Callable[..., Any])


def type_tag(config: type[BaseModel]) -> str:
    """The value of ``config``'s ``type: Literal["..."]`` field."""
    field = config.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    if len(args) != 1 or not isinstance(args[0], str):
        raise TypeError(f"{config.__name__} needs a field type: Literal['<tag>']")
    return args[0]


class Plugins(Generic[C, A, P]):
    """The plugins of one kind (``what``): config class -> factory, by ``type`` tag.

    A factory takes the config and the kind's arguments ``A`` and returns a
    ``P``. ``default`` is the tag of a section written without ``type``.
    """

    def __init__(self, what: str, default: str | None = None) -> None:
        self.what = what
        self.default = default
        self._configs: dict[str, type[C]] = {}
        self._factories: dict[type[C], Callable[Concatenate[Any, A], P]] = {}

    def register(self, config: type[C]) -> Callable[[F], F]:
        """Register the decorated class or function as the factory for ``config``."""
        tag = type_tag(config)

        def add(factory: F) -> F:
            if tag in self._configs or config in self._factories:
                raise ValueError(f"{self.what} type '{tag}' is already registered")
            self._configs[tag] = config
            self._factories[config] = factory
            return factory

        return add

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(self._configs)

    def configs(self) -> tuple[type[C], ...]:
        """The registered config classes, in registration order."""
        return tuple(self._configs.values())

    def build(self, cfg: C, *args: A.args, **kwargs: A.kwargs) -> P:
        """What ``cfg`` configures, made by its registered factory."""
        try:
            factory = self._factories[type(cfg)]
        except KeyError:
            raise TypeError(f"no {self.what} registered for {type(cfg).__name__}") from None
        return factory(cfg, *args, **kwargs)

    def config_union(self) -> Any:
        """The pydantic type of a section of this kind, discriminated on ``type``."""
        if not self._configs:
            raise RuntimeError(f"no {self.what} registered")
        tags = sorted(self._configs, key=lambda t: (t != self.default, t))
        members = tuple(Annotated[self._configs[tag], Tag(tag)] for tag in tags)
        known = ", ".join(f"{t} (default)" if t == self.default else t for t in tags)
        default = self.default

        def tag_of(value: Any) -> str | None:
            raw = value.get("type", default) if isinstance(value, dict) else None
            if raw is None and not isinstance(value, dict):
                raw = getattr(value, "type", default)
            return raw if isinstance(raw, str) else repr(raw)

        return Annotated[
            typing.Union[members],  # noqa: UP007 (built from a runtime tuple)
            Discriminator(
                tag_of,
                custom_error_type=f"unknown_{self.what.replace(' ', '_')}",
                custom_error_message=f"type must be one of: {known}",
            ),
        ]
