"""Progress bars for the command line: tqdm on a terminal, none when stderr is a file or pipe
(logs stay readable)."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(*args, **kwargs) -> tqdm:
    """``tqdm(*args, **kwargs)``, disabled unless stderr is a terminal."""
    return tqdm(*args, disable=not sys.stderr.isatty(), **kwargs)
