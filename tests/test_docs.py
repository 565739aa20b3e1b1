"""The reference lists stay complete: every sweep plan has its row in ``configs/README.md`` and every results folder
its command in ``results/README.md`` (a plan or table added without one fails here, not in a reader's hands)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_sweep_plan_has_a_row_in_the_configs_readme():
    listed = (REPO / "configs" / "README.md").read_text()
    plans = sorted(p.name for p in (REPO / "configs").glob("*.json"))
    assert plans, "no plans found in configs/"
    assert [p for p in plans if f"`{p}`" not in listed] == []


def test_every_results_folder_is_listed_with_its_command():
    listed = (REPO / "results" / "README.md").read_text()
    folders = sorted(p.name for p in (REPO / "results").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert folders, "no folders found in results/"
    # a folder is named as `results/<name>`, `runs/<name>` or `<name>` in a command that writes it
    missing = [f for f in folders if not re.search(rf"(results/|runs/|`){re.escape(f)}(?![\w-])", listed)]
    assert missing == []
    assert "results/README.md" in (REPO / "README.md").read_text()
