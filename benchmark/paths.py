"""Where the harness keeps things on disk: the one definition of the feature-cache location.

Pure Python with no heavy imports, so every stage (tasks, submissions, the grid, the CLI's
parsers) can name the cache without importing the stage that fills it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the feature cache's location.
CACHE_ENV = "SYNTHBENCH_CACHE"


def default_cache_dir() -> Path:
    """The feature cache: $SYNTHBENCH_CACHE when set, else ~/.cache/synthbench/features."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "synthbench" / "features"


__all__ = ["CACHE_ENV", "default_cache_dir"]
