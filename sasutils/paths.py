"""Where data and caches live: one setting each.

- Data directory: argument ``data_dir`` if given, else the environment variable ``SASUTILS_DATA``,
  else ``../shared/data`` next to the repository (the layout of this project's workspace).
- Cache directory (spaCy parses, tokenizers, packed corpora): ``SASUTILS_CACHE`` or
  ``~/.cache/sasutils``.
- The notebooks' tiny test mode: ``SASUTILS_SMOKE`` (on under pytest) and where its runs go,
  ``SASUTILS_SMOKE_RUNS`` (a fresh folder per pytest session, so that the tests train every time).

Nothing from the data directory is ever copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA = "SASUTILS_DATA"
ENV_CACHE = "SASUTILS_CACHE"
ENV_SMOKE, ENV_SMOKE_RUNS = "SASUTILS_SMOKE", "SASUTILS_SMOKE_RUNS"
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


def smoke_mode() -> bool:
    """Whether the notebooks run at their tiny test sizes: ``$SASUTILS_SMOKE`` is "1", "true" or "yes" (unset, "",
    "0", "false" or "no": off; anything else is an error naming it, rather than a guess)."""
    value = os.environ.get(ENV_SMOKE, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"${ENV_SMOKE}={os.environ[ENV_SMOKE]!r}: must be 1/true/yes or 0/false/no (or unset)")


def smoke_runs(name: str) -> Path:
    """Where a notebook's tiny test runs go: ``$SASUTILS_SMOKE_RUNS/<name>`` (the tests' conftest.py sets a fresh
    folder per pytest session, so the tiny runs are trained, not found finished), else the cache's
    ``smoke_runs/<name>``."""
    root = os.environ.get(ENV_SMOKE_RUNS)
    return Path(root).expanduser() / name if root else cache_dir("smoke_runs") / name
