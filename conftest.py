"""Repository-wide pytest setup (also applies to notebooks collected by ``pytest --nbmake``).

Notebooks read ``SASUTILS_SMOKE`` in their parameters cell: under pytest they run at tiny sizes, with their tiny runs
in a fresh folder per session (``SASUTILS_SMOKE_RUNS``, removed at the end), so that every test session trains them.
Hugging Face hub access is switched off: everything is read from the data directory.
"""

import os
import shutil
import tempfile

os.environ.setdefault("SASUTILS_SMOKE", "1")
if "SASUTILS_SMOKE_RUNS" not in os.environ:
    _smoke_runs = tempfile.mkdtemp(prefix="sasutils_smoke_runs_")
    os.environ["SASUTILS_SMOKE_RUNS"] = _smoke_runs
else:
    _smoke_runs = None  # set by the caller: theirs to keep
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_sessionfinish(session, exitstatus):
    if _smoke_runs:
        shutil.rmtree(_smoke_runs, ignore_errors=True)
