"""Where data and caches live: one setting each.

- Data directory: argument ``data_dir`` if given, else the environment variable ``SASUTILS_DATA``,
  else ``../shared/data`` next to the repository (the layout of this project's workspace).
- Cache directory (spaCy parses, tokenizers, packed corpora): ``SASUTILS_CACHE`` or
  ``~/.cache/sasutils``.

Nothing from the data directory is ever copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA = "SASUTILS_DATA"
ENV_CACHE = "SASUTILS_CACHE"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir(override: str | os.PathLike | None = None, *, must_exist: bool = True) -> Path:
    """Resolve the data directory (override > $SASUTILS_DATA > ../shared/data)."""
    if override not in (None, ""):
        path, source = Path(override).expanduser(), "the data_dir parameter"
    elif os.environ.get(ENV_DATA):
        path, source = Path(os.environ[ENV_DATA]).expanduser(), f"${ENV_DATA}"
    else:
        path, source = _REPO_ROOT.parent / "shared" / "data", "the default ../shared/data"
    if must_exist and not path.is_dir():
        raise FileNotFoundError(
            f"data directory {path} (from {source}) does not exist; set ${ENV_DATA} or pass data_dir="
        )
    return path.resolve() if path.exists() else path


def cache_dir(sub: str = "") -> Path:
    """Cache directory ($SASUTILS_CACHE or ~/.cache/sasutils), created on demand."""
    root = Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "sasutils").expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_file(relpath: str, data_dir_override: str | os.PathLike | None = None) -> Path:
    """A file inside the data directory, with an error naming it if missing."""
    path = data_dir(data_dir_override) / relpath
    if not path.exists():
        raise FileNotFoundError(f"expected data file {path} is missing (see the data directory's MANIFEST.md)")
    return path
