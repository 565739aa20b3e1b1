"""Repository-wide pytest setup (also applies to notebooks collected by ``pytest --nbmake``).

Notebooks read ``SASUTILS_SMOKE`` in their parameters cell: under pytest they run at tiny sizes.
Hugging Face hub access is switched off: everything is read from the data directory.
"""

import os

os.environ.setdefault("SASUTILS_SMOKE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
