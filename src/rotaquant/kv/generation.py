"""``model.generate(..., cache_implementation="rotaquant", cache_config={...})``.

transformers 5.24 has no way for a package to register a cache implementation: the names are
fixed tuples in ``generation.configuration_utils`` and ``GenerationConfig.validate`` refuses any
other. The closest supported route is an instance-level wrapper of ``model.generate`` (what
:func:`rotaquant.kv.enable` installs): when the call, its ``generation_config`` or
``model.generation_config`` asks for ``"rotaquant"`` (or the 0.1 spelling ``"turboquant"``,
with a DeprecationWarning), it builds ``TurboQuantCache.from_dict(cache_config,
config=model.config)`` (the options of :class:`~rotaquant.kv.KVConfig`), passes it as ``cache=`` and
hands transformers a generation config without the name it would refuse. Pipelines call
``model.generate``, so ``pipeline("text-generation", model=model)`` takes the same route.
"""

from __future__ import annotations

import copy
import types
import warnings

from .cache import TurboQuantCache
from .interface import CACHE_IMPLEMENTATION, OLD_CACHE_IMPLEMENTATION

NAMES = (CACHE_IMPLEMENTATION, OLD_CACHE_IMPLEMENTATION)


def install(model) -> None:
    """Make ``model.generate`` take ``cache_implementation="rotaquant"`` (idempotent; a bound
    method, so ``copy.deepcopy(model)`` carries it to the copy)."""
    if getattr(model.generate, "__func__", None) is _generate:
        return
    model.generate = types.MethodType(_generate, model)


def _generate(model, *args, **kwargs):
    original = type(model).generate
    passed = kwargs.get("generation_config")
    # transformers' precedence: the keyword, then the passed config's set fields, then the
    # model's config
    asked = kwargs.get("cache_implementation")
    for config in (passed, model.generation_config):
        if asked is None and config is not None:
            asked = config.cache_implementation
    saved = model.generation_config
    # transformers fills unset fields from model.generation_config: whenever it holds the name,
    # hand it one without for this call (not thread-safe against a concurrent generate on the
    # same model object)
    model.generation_config = _without_name(saved)
    try:
        if asked in NAMES:
            if asked == OLD_CACHE_IMPLEMENTATION:
                warnings.warn(
                    f'cache_implementation="{OLD_CACHE_IMPLEMENTATION}" is deprecated: use '
                    f'"{CACHE_IMPLEMENTATION}" (removed after rotaquant 0.2)',
                    DeprecationWarning,
                    stacklevel=2,
                )
            if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None:
                raise ValueError(
                    f'cache_implementation="{asked}" and a cache object were both passed: use one'
                )
            kwargs.pop("cache_implementation", None)
            options = kwargs.pop("cache_config", None)
            for config in (passed, saved):
                if options is None and config is not None:
                    options = config.cache_config
            kwargs["cache"] = TurboQuantCache.from_dict(options, config=model.config)
        if passed is not None:
            kwargs["generation_config"] = _without_name(passed)
        return original(model, *args, **kwargs)
    finally:
        model.generation_config = saved


def _without_name(config):
    """``config`` itself, or a copy without our ``cache_implementation`` and its
    ``cache_config`` (what transformers would refuse)."""
    if config.cache_implementation not in NAMES:
        return config
    config = copy.deepcopy(config)
    config.cache_implementation = config.cache_config = None
    return config
