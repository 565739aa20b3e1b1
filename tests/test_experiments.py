"""experiments: helpers over runs' metrics tables."""

import json

import numpy as np
import pandas as pd
import pytest

from sasutils import experiments


def test_wall_minutes_takes_each_runs_last_wall_across_tables():
    a = pd.DataFrame({"run": ["r1", "r1", "r2"], "step": [0, 10, 0], "wall": [30.0, 120.0, np.nan]})
    b = pd.DataFrame({"run": ["r2", "r3"], "step": [10, 10], "wall": [600.0, np.nan]})
    got = experiments.wall_minutes(a, b)
    assert got.to_dict() == pytest.approx({"r1": 2.0, "r2": 10.0})  # r3 never logged a wall time: absent


def test_collect_lists_options_added_later_at_their_defaults(tmp_path):
    from sasutils import train as T

    for name, extra in [("old", {}), ("new", {"ln_placement": "pre"})]:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"steps": 10, "seed": 0, **extra}))
        (d / "metrics.jsonl").write_text(json.dumps({"step": 10, "eval_loss": 6.0}) + "\n")
    logs, configs = experiments.collect(tmp_path)
    got = configs.set_index("run")
    assert got.loc["old", "ln_placement"] == T.LATER_DEFAULTS["ln_placement"] == "post"  # ran before the option
    assert got.loc["new", "ln_placement"] == "pre" and bool(got.loc["new", "finished"])
    with pytest.raises(FileNotFoundError, match=r"runs_root=.*no run folder.*pattern 'x\*'"):
        experiments.collect(tmp_path, "x*")  # e.g. a fresh clone, whose runs/ is empty


def test_rescore_keeps_the_configuration_and_recomputes_the_verdicts():
    from sasutils import onsets

    steps = np.arange(0, 5001, 125, dtype=float)
    loss = 6.5 + 2.5 * np.exp(-steps / 120) - 0.8 / (1 + np.exp(-(steps - 2500) / 100))
    uas = 0.1 + 0.25 / (1 + np.exp(-(steps - 2400) / 100))
    logs = pd.DataFrame({"run": "a", "step": steps, "eval_loss": loss, "sas_uas": uas})
    fresh = onsets.transition_report(logs)
    stale = pd.DataFrame({"run": ["a"], "mask_prob": [0.4], "finished": [True], "uas_ok": [not fresh["uas_ok"]],
                          "structure_onset": [123.0]})  # verdicts of an earlier rule
    got = experiments.rescore(stale, logs)
    assert len(got) == 1 and got.mask_prob[0] == 0.4 and bool(got.finished[0])
    assert bool(got.uas_ok[0]) == fresh["uas_ok"] and got.structure_onset[0] == pytest.approx(fresh["structure_onset"])
    assert list(got.columns[:3]) == ["run", "mask_prob", "finished"]


def test_read_results_rescores_a_folder_and_adds_the_timing_columns(tmp_path):
    from sasutils import onsets

    steps = np.arange(0, 5001, 125, dtype=float)
    loss = 6.5 + 2.5 * np.exp(-steps / 120) - 0.8 / (1 + np.exp(-(steps - 2500) / 100))
    logs = pd.concat([pd.DataFrame({"run": r, "step": steps, "eval_loss": loss,
                                    "sas_uas": 0.1 + 0.25 / (1 + np.exp(-(steps - c) / 100))})
                      for r, c in (("b", 2400), ("a", 2200))])
    logs.to_csv(tmp_path / "metrics.csv", index=False)
    pd.DataFrame({"run": ["b", "a"], "seed": [1, 0], "uas_ok": [None, None]}).to_csv(tmp_path / "summary.csv",
                                                                                    index=False)
    reports, read_logs = experiments.read_results(tmp_path)
    assert list(reports.seed) == [0, 1] and list(reports.run) == ["a", "b"]  # sorted by seed
    want = onsets.timing(experiments.rescore(pd.read_csv(tmp_path / "summary.csv"), read_logs))
    pd.testing.assert_frame_equal(reports, want.sort_values("seed").reset_index(drop=True))
    assert {"lead", "all_ok", "misses"} <= set(reports.columns) and len(read_logs) == len(logs)


def test_a_run_cannot_be_reused_or_resumed_with_other_metric_settings(small_tokenizer, tmp_path):
    from sasutils import sweep, train as T

    from .test_measure import _data

    data = _data(small_tokenizer)
    params = dict(preset="cpu-tiny", steps=4, warmup=1, batch_size=8, seq_len=16, hidden_size=32, intermediate_size=64,
                  eval_every=2, checkpoint_every=2, checkpoint_log_steps=[], eval_batches=1)
    cfg = T.make_config(**params)
    run_dir = tmp_path / T.run_name(cfg)
    on = dict(sas_every=2, sas_sentences=40)  # settings in effect: SAS on (its callback is prebuilt here: none)
    experiments.run(cfg, run_dir=run_dir, data=data, progress=False, callbacks=[], stop_at=2, **on)  # paused
    saved = json.loads((run_dir / experiments.METRICS_FILE).read_text())
    assert saved == experiments.metric_settings(**on) and saved["blimp_every"] == 0  # defaults filled in
    with pytest.raises(ValueError, match=r"sas_sentences=40 \(asked: 300\)"):  # resuming with others
        experiments.run(cfg, run_dir=run_dir, data=data, progress=False, callbacks=[], sas_every=2)
    log = experiments.run(cfg, run_dir=run_dir, data=data, progress=False, callbacks=[], **on)  # resumed
    assert log.step.max() == 4
    assert experiments.run(cfg, run_dir=run_dir, data=data, progress=False, callbacks=[], **on).equals(log)
    with pytest.raises(ValueError, match=r"sas_every=2 \(asked: 0\)"):
        experiments.run(cfg, run_dir=run_dir, data=data, progress=False)  # the defaults: SAS off
    with pytest.raises(ValueError, match=r"sas_sentences=40 \(asked: 500\)"):  # a sweep refuses before any worker
        sweep.run_plan([params], tmp_path, {"sas_every": 2, "sas_sentences": 500})
    assert sweep.run_plan([params], tmp_path, on).status.tolist() == ["done"]  # finished: skipped
    with pytest.raises(TypeError, match="sas_sentence"):
        experiments.metric_settings(sas_sentence=40)
    # settings not in effect do not count: with SAS off, its sentence count changes nothing
    (run_dir / experiments.METRICS_FILE).write_text(json.dumps(experiments.metric_settings(sas_sentences=40)))
    experiments.check_metric_settings(run_dir, sas_sentences=500)
    # a setting the file lacks (added later) counts at its default; no file (an older run) or no row: not checked
    (run_dir / experiments.METRICS_FILE).write_text(json.dumps({"sas_every": 0, "blimp_every": 0}))
    experiments.check_metric_settings(run_dir)
    (run_dir / experiments.METRICS_FILE).unlink()
    experiments.check_metric_settings(run_dir, sas_every=7)
    experiments.check_metric_settings(tmp_path / "never_logged", sas_every=7)


PARAMS = 'seed = 0\npreset = "cpu-tiny"  # a comment\nsuppress_steps = 0\nrun_dir = None\n'


def test_check_parameters_refuses_what_papermill_injects_beyond_the_parameters_cell():
    experiments.check_parameters(["", PARAMS, "import time"])  # no injected cell: run by hand or by nbmake
    experiments.check_parameters(["", PARAMS, "# Parameters\nseed = 1\nsuppress_steps = 3000\n", "x = 1"])
    with pytest.raises(ValueError, match=r"unknown parameter 'supress_steps' \(did you mean 'suppress_steps'\?\)"):
        experiments.check_parameters(["", PARAMS, "# Parameters\nsupress_steps = 3000\n"])
    with pytest.raises(ValueError, match=r"unknown parameters 'runs_root' \(did you mean 'run_dir'\?\), 'zzz':.*"
                                         r"parameters are preset, run_dir, seed, suppress_steps$"):
        experiments.check_parameters(["", PARAMS, '# Parameters\nseed = 1\nruns_root = "r"\nzzz = [1, 2]\n'])
    # papermill --inject-paths adds its own names; a cell run again by hand later is not papermill's
    experiments.check_parameters(["", PARAMS, '# Parameters\nseed = 1\nPAPERMILL_INPUT_PATH = "a.ipynb"\n'])
    experiments.check_parameters(["", PARAMS, "# Parameters\nseed = 1\n", "y = 2", "# Parameters\nseed = 2\n"])


@pytest.mark.parametrize("name", ["02_train", "03_measure", "04_intervene", "05_regime"])
def test_every_notebook_checks_its_parameters_first(name):
    """The check runs in the first cell after the parameters (papermill's injected cell comes between)."""
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    first = "".join(code[1]["source"])
    before = first[:first.index("experiments.check_parameters(In)")].splitlines()
    assert all(not line.strip() or line.startswith(("import ", "from ")) for line in before), before


def test_a_misspelt_papermill_parameter_stops_the_main_notebook_before_training(tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("SASUTILS_SMOKE", "1")
    from pathlib import Path

    nb = Path(__file__).parents[1] / "notebooks" / "02_train.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter 'supress_steps'") as e:
        pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), parameters={"supress_steps": 3000},
                            kernel_name="python3", progress_bar=False, cwd=str(nb.parents[1]))
    # it stopped in the third cell run (parameters, papermill's, this one), before the configuration: nothing trained
    assert e.value.exec_count == 3 and "check_parameters(In)" in e.value.source
