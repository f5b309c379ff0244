"""The defense protocol, its registry, and chains of defenses.

A defense is a factory that takes its hyperparameters and returns a
:class:`Defense`: a named pair of pure functions plus a description.

* ``fit(x, *, key) -> state`` fits whatever the defense needs from the stored
  vectors ``x`` of shape ``(N, d)`` (quantization ranges, a projection matrix).
  Stateless defenses return :data:`EMPTY_STATE`.
* ``apply(state, x, *, key) -> y`` maps a batch ``(B, d)`` to ``(B, d_out)``
  float32. Randomness comes only from ``key``, so the same key gives the same output.
* ``describe(d) -> dict`` reports properties at input dimension ``d``: the
  output dimension, the expected cosine between input and output for noise
  mechanisms (``None`` where it has no closed form), and bytes per stored vector.

Factories are found by name in :data:`DEFENSES`, and a spec string such as
``quantize(bits=4)|random_projection(dim=256)`` builds a chain with
:func:`make_defense`.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from importlib import metadata
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from slime_def.errors import ParameterError, SpecError
from slime_def.registry import Registry
from slime_def.specs import Spec, format_spec, parse_chain

logger = logging.getLogger(__name__)

EMPTY_STATE: dict = {}
ENTRY_POINT_GROUP = "slime_def.defenses"
RANDOMNESS = ("none", "fit", "apply")


class Defense(NamedTuple):
    """A configured defense; see the module docstring for the contract."""

    spec: str
    fit: Callable[..., Any]
    apply: Callable[..., jax.Array]
    describe: Callable[[int], dict]
    jittable: bool = True


@dataclasses.dataclass(frozen=True)
class DefenseEntry:
    """Registry record: the factory plus what `slime-def defenses` prints."""

    name: str
    factory: Callable[..., Defense]
    family: str
    summary: str
    units: dict[str, str]
    identity: dict[str, Any] | None
    example: dict[str, Any] | None = None
    randomness: str = "none"

    def defaults(self) -> dict[str, Any]:
        """Return the factory's keyword defaults (``None`` means unset)."""
        return {
            key: param.default
            for key, param in inspect.signature(self.factory).parameters.items()
            if param.default is not inspect.Parameter.empty
        }

    def required(self) -> list[str]:
        """Return the names of the parameters that have no default."""
        return [
            key
            for key, param in inspect.signature(self.factory).parameters.items()
            if param.default is inspect.Parameter.empty
            and param.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]

    def example_spec(self) -> str:
        """Return a valid spec string for this defense: its example, else its name."""
        return format_spec(Spec(self.name, tuple((self.example or {}).items())))


class _DefenseRegistry(Registry[Defense]):
    def __init__(self):
        super().__init__("defense")
        self.entries: dict[str, DefenseEntry] = {}

    def unregister(self, name: str) -> None:
        super().unregister(name)
        self.entries.pop(name, None)


DEFENSES = _DefenseRegistry()


def register_defense(
    name: str,
    *,
    family: str,
    summary: str,
    units: dict[str, str] | None = None,
    identity: dict[str, Any] | None = None,
    example: dict[str, Any] | None = None,
    randomness: str = "none",
):
    """Register a defense factory under ``name``.

    Args:
      name: the spec name, for example ``"gaussian"``.
      family: a group for plots and listings ("noise", "dp", "quantization", ...).
      summary: one line for `slime-def defenses`.
      units: parameter name to its unit and meaning.
      identity: parameters at which the defense must return its input unchanged
        (zero strength), checked by the shared defense test; ``None`` if none exist.
      example: a valid parameter setting, needed when some parameter has no
        default; the shared defense test and `slime-def defenses` use it.
      randomness: which function consumes the key: ``"none"`` (deterministic),
        ``"fit"`` (a random but fixed transform) or ``"apply"`` (fresh noise per call).

    Raises:
      SlimeDefError: ``name`` is already registered.
      ValueError: ``randomness`` is not one of the three values.
    """
    if randomness not in RANDOMNESS:
        raise ValueError(f"randomness must be one of {', '.join(RANDOMNESS)}, got {randomness!r}")

    def add(factory: Callable[..., Defense]) -> Callable[..., Defense]:
        DEFENSES.register(name, factory)
        DEFENSES.entries[name] = DefenseEntry(
            name, factory, family, summary, dict(units or {}), identity,
            None if example is None else dict(example), randomness,
        )
        return factory

    return add


_FAILED_ENTRY_POINTS: set[tuple[str, str]] = set()


def _load_entry_points() -> None:
    """Register defenses that installed packages expose in the entry-point group.

    An entry point ``name = "package.module:factory"`` either names a module
    whose import registers ``name`` with :func:`register_defense`, or names a
    plain factory, which is then registered under ``name`` in family "plug-in".
    A plug-in that fails to load is logged once and skipped.
    """
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        marker = (entry_point.name, entry_point.value)
        if entry_point.name in DEFENSES or marker in _FAILED_ENTRY_POINTS:
            continue
        try:
            loaded = entry_point.load()
        except Exception as exc:  # a broken plug-in must not break the built-ins
            _FAILED_ENTRY_POINTS.add(marker)
            logger.warning("could not load defense plug-in %s: %s", entry_point.value, exc)
            continue
        if entry_point.name not in DEFENSES and callable(loaded):
            summary = (inspect.getdoc(loaded) or entry_point.value).splitlines()[0]
            register_defense(entry_point.name, family="plug-in", summary=summary)(loaded)


def available_defenses() -> dict[str, DefenseEntry]:
    """Register the built-ins and installed plug-ins, and return every entry by name."""
    from slime_def import defenses as _builtin  # noqa: F401  registers the built-ins

    _load_entry_points()
    return dict(DEFENSES.entries)


def _create_one(spec: Spec) -> Defense:
    factory = DEFENSES.get(spec.name)
    params = inspect.signature(factory).parameters
    for key, _ in spec.kwargs:
        if key not in params:
            valid = ", ".join(params) or "(none)"
            raise SpecError(f"unknown parameter {key!r} for defense {spec.name!r}; valid: {valid}")

    entry = DEFENSES.entries.get(spec.name)
    if entry is not None:
        missing = [key for key in entry.required() if key not in spec.params]
        if missing:
            raise SpecError(
                f"missing value for {', '.join(missing)} in defense {spec.name!r}; "
                f"give it in the spec, for example {entry.example_spec()!r}"
            )
    try:
        defense = factory(**spec.params)
    except TypeError as exc:
        raise SpecError(f"invalid parameters for defense {format_spec(spec)!r}: {exc}") from None
    return defense._replace(spec=format_spec(spec))


def make_defense(spec: str) -> Defense:
    """Build a defense, or a left-to-right chain, from its spec string.

    >>> make_defense("none").spec
    'none'

    Raises:
      SpecError: unknown name or parameter, or malformed spec.
      ParameterError: a parameter outside its valid range.
    """
    from slime_def import defenses as _builtin  # noqa: F401  registers the built-ins

    _load_entry_points()
    parts = parse_chain(spec)
    built = [_create_one(part) for part in parts]
    if len(built) == 1:
        return built[0]
    return chain(*built)


def chain(*parts: Defense) -> Defense:
    """Compose defenses left to right, threading fitted state through.

    Each part is fitted on the output of the parts before it, applied with the
    fitted states, so a projection after a quantizer is fitted on quantized vectors.
    """

    def fit(x, *, key):
        states = []
        keys = jax.random.split(key, 2 * len(parts))
        for i, part in enumerate(parts):
            state = part.fit(x, key=keys[2 * i])
            states.append(state)
            x = part.apply(state, x, key=keys[2 * i + 1])
        return tuple(states)

    def apply(states, x, *, key):
        keys = jax.random.split(key, len(parts))
        for part, state, part_key in zip(parts, states, keys):
            x = part.apply(state, x, key=part_key)
        return x

    def describe(dim: int) -> dict:
        input_dim, per_part = dim, []
        for part in parts:
            props = part.describe(dim)
            per_part.append(props)
            dim = props["output_dim"]

        # Cosines of successive parts do not compose in closed form, so a chain
        # reports one only when a single part changes the vectors at all.
        cosines = [props.get("expected_cosine") for props in per_part]
        changing = [cosine for cosine in cosines if cosine != 1.0]
        dims_kept = all(props["output_dim"] == input_dim for props in per_part)
        if not changing:
            cosine = 1.0
        elif len(changing) == 1 and dims_kept:
            cosine = changing[0]
        else:
            cosine = None
        return {
            "output_dim": dim,
            "expected_cosine": cosine,
            "bytes_per_vector": per_part[-1].get("bytes_per_vector"),
            "parts": per_part,
        }

    return Defense(
        spec="|".join(part.spec for part in parts),
        fit=fit,
        apply=apply,
        describe=describe,
        jittable=all(part.jittable for part in parts),
    )


def float_bytes(dim: int) -> int:
    """Bytes of one float32 vector of ``dim`` coordinates."""
    return 4 * int(dim)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Scale each row of ``x`` (N, d) to unit L2 norm."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, eps)


def check_range(name: str, value, *, low=None, high=None, low_open=False, high_open=False,
                integer=False, hint: str = "") -> None:
    """Raise :class:`ParameterError` unless ``low <(=) value <(=) high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name} must be a number, got {value!r}{hint}")
    if integer and int(value) != value:
        raise ParameterError(f"{name} must be an integer, got {value!r}{hint}")
    if value != value:  # NaN
        raise ParameterError(f"{name} must be a number, got NaN{hint}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lower = "(-inf" if low is None else f"{left}{low}"
        upper = "inf)" if high is None else f"{high}{right}"
        bounds = f"{lower}, {upper}"
        raise ParameterError(f"{name} must be in {bounds}, got {value!r}{hint}")


def resolved_spec(spec: str) -> str:
    """Return ``spec`` with every defaulted parameter written out.

    ``gaussian`` becomes ``gaussian(sigma=0.02, renormalize=True)``, so a record
    states the exact setting even if a later version changes a default. Unset
    defaults (``None``) are left out, and so is a default that would conflict with
    the given parameters (``gaussian(cosine=0.9)`` gets no ``sigma``).
    """
    available_defenses()
    parts = []
    for part in parse_chain(spec):
        defaults = DEFENSES.entries[part.name].defaults()
        exact = {k: v for k, v in defaults.items() if type(v) in (bool, int, float, str)}
        loose = {k: type(v).__mro__[1](v) for k, v in defaults.items()
                 if type(v) not in (bool, int, float, str) and isinstance(v, (int, float, str))}
        order = list(inspect.signature(DEFENSES.entries[part.name].factory).parameters)

        def in_order(values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
            return tuple((key, values[key]) for key in order if key in values)

        resolved = Spec(part.name, in_order({**exact, **loose, **part.params}))
        try:
            _create_one(resolved)
        except (SpecError, ParameterError):
            resolved = Spec(part.name, in_order({**exact, **part.params}))
        parts.append(resolved)
    return format_spec(tuple(parts))
