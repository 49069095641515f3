"""Imported first by every module of ``rotaquant.kv`` that needs torch and transformers: when
either is missing, importing that module (``import rotaquant.kv.cache`` as much as ``from
rotaquant.kv import TurboQuantCache``) is a ModuleNotFoundError naming the extra to install."""

from __future__ import annotations

import importlib.util

MISSING = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
if MISSING:
    raise ModuleNotFoundError(
        f"rotaquant.kv needs {' and '.join(MISSING)}: pip install 'rotaquant[kv]'",
        name=MISSING[0],
    )
