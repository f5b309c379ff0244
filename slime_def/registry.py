"""Plain name-to-factory registries for defenses, attacks, encoders and datasets."""

from __future__ import annotations

import difflib
import inspect
from typing import Callable, Generic, Iterator, TypeVar

from slime_def.errors import SlimeDefError, SpecError
from slime_def.specs import Spec, parse_spec

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict of named factories; registering a name twice is an error.

    Args:
      kind: what the registry holds, used in messages ("defense", "encoder").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None):
        """Register ``factory`` under ``name``; usable as a decorator."""

        def add(func: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise SlimeDefError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = func
            return func

        return add(factory) if factory is not None else add

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory for ``name``; an unknown name lists the known ones."""
        try:
            return self._factories[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._factories, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SpecError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names()) or '(none)'}"
            ) from None

    def create(self, spec: str | Spec, **extra) -> T:
        """Build a component from a spec string, checking parameter names first."""
        parsed = parse_spec(spec) if isinstance(spec, str) else spec
        factory = self.get(parsed.name)
        params = inspect.signature(factory).parameters
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if not accepts_any:
            for key, _ in parsed.kwargs:
                if key not in params:
                    valid = ", ".join(p for p in params if p not in extra) or "(none)"
                    raise SpecError(
                        f"unknown parameter {key!r} for {self.kind} {parsed.name!r}; valid: {valid}"
                    )
        return factory(**parsed.params, **extra)
