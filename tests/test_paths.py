"""paths: the data and cache settings, and the notebooks' tiny test mode."""

import pytest

from sasutils import paths


def test_data_dir_names_its_source_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SASUTILS_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere.*\$SASUTILS_DATA"):
        paths.data_dir()
    assert paths.data_dir(tmp_path) == tmp_path.resolve()  # the parameter wins over the variable


@pytest.mark.parametrize("value, on", [("", False), ("0", False), ("false", False), ("No", False), ("1", True),
                                       ("true", True), ("YES", True)])
def test_smoke_mode_reads_the_variable_as_a_switch(monkeypatch, value, on):
    monkeypatch.setenv("SASUTILS_SMOKE", value)
    assert paths.smoke_mode() is on


def test_smoke_mode_refuses_what_it_cannot_read(monkeypatch):
    monkeypatch.delenv("SASUTILS_SMOKE", raising=False)
    assert paths.smoke_mode() is False
    monkeypatch.setenv("SASUTILS_SMOKE", "maybe")
    with pytest.raises(ValueError, match="SASUTILS_SMOKE='maybe'"):
        paths.smoke_mode()


def test_smoke_runs_go_to_the_sessions_folder_else_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SASUTILS_SMOKE_RUNS", str(tmp_path / "session"))
    assert paths.smoke_runs("regime") == tmp_path / "session" / "regime"
    monkeypatch.delenv("SASUTILS_SMOKE_RUNS")
    monkeypatch.setenv("SASUTILS_CACHE", str(tmp_path / "cache"))
    assert paths.smoke_runs("regime") == tmp_path / "cache" / "smoke_runs" / "regime"
