"""Moved to :mod:`rotaquant.contrib.data` (this alias warns, and goes in rotaquant 0.3)."""

from ._deprecation import warn
from .contrib.data import *  # noqa: F403
from .contrib.data import __all__  # noqa: F401

warn("rotaquant.data moved to rotaquant.contrib.data", stacklevel=3)
