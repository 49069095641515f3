"""Old spellings that keep working for one release, with a DeprecationWarning.

Public constructors take their arguments after ``(dim, bits)`` by keyword only; 0.1 took them
by position, in orders that differed between classes. :func:`keyword_only_after` keeps such
calls working (mapped onto the 0.1 order) until 0.3, and says how to write them now.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
REMOVED_IN = "0.3"


def warn(message: str, stacklevel: int = 3) -> None:
    """A DeprecationWarning saying when the old spelling goes."""
    warnings.warn(
        f"{message} (deprecated in rotaquant 0.2, removed in {REMOVED_IN})",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def positional_to_keywords(
    owner: str, args: Sequence[Any], names: Sequence[str], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``kwargs`` plus ``args`` under ``names`` (the 0.1 positional order), with a warning;
    TypeError for too many values or a value given twice."""
    if not args:
        return kwargs
    if len(args) > len(names):
        raise TypeError(
            f"{owner} got {len(args)} positional values for its keyword-only options "
            f"({', '.join(names)})"
        )
    given = names[: len(args)]
    twice = [name for name in given if name in kwargs]
    if twice:
        raise TypeError(f"{owner} got multiple values for argument {twice[0]!r}")
    warn(
        f"{owner}: pass {', '.join(given)} by keyword ({', '.join(f'{n}=...' for n in given)})",
        stacklevel=4,
    )
    return {**kwargs, **dict(zip(given, args, strict=True))}


def keyword_only_after(count: int, old_order: Sequence[str]) -> Callable[[F], F]:
    """Decorate a method (``__init__``, or a classmethod's function) whose parameters after
    ``self`` and the next ``count`` are keyword-only: extra positional values are mapped onto
    ``old_order`` (the names of the parameters after those ``count``, in their 0.1 order) with
    a DeprecationWarning."""

    def wrap(fn: F) -> F:
        owner = fn.__qualname__.removesuffix(".__init__")
        skip = count + 1  # self (or cls) and the positional parameters

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if len(args) > skip:
                kwargs = positional_to_keywords(owner, args[skip:], old_order, kwargs)
                args = args[:skip]
            return fn(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap
