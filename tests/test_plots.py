"""plots.developmental reads metrics logs as training writes them."""

import pandas as pd
import pytest

from sasutils import plots


def _logs():
    rows = []
    for run, shift in [("a", 0.0), ("b", 0.1)]:
        for step, loss, uas, blimp in [(0, 9.0, 0.11, 0.50), (250, 6.5, 0.14, None), (500, 5.9, 0.32, 0.55)]:
            rows.append(dict(run=run, step=step, eval_loss=loss + shift, sas_uas=uas, offset_best=0.308,
                             blimp_mean=blimp))
    return pd.DataFrame(rows)


def test_developmental_reads_log_columns_like_short_names():
    logs = _logs()
    found = pd.DataFrame({"run": ["a", "b"], "structure_onset": [200.0, 250.0], "capabilities_onset": [400.0, 450.0]})
    raw = plots.developmental(logs, found).to_dict()
    short = plots.developmental(logs.rename(columns=plots.LOG_COLUMNS), found).to_dict()
    assert raw == short
    assert len(raw["vconcat"]) == 3  # loss, SAS, BLiMP panels
    assert list(logs.columns) == ["run", "step", "eval_loss", "sas_uas", "offset_best", "blimp_mean"]  # not renamed in place


def test_held_out_margins_facets_the_chosen_relations():
    rows = [dict(run=run, step=step, relation=rel, best_head="L0H1-dep", offset=1, head_uas=0.3, offset_uas=0.28,
                 margin=0.02) for run in ("a", "b") for step in (0, 500) for rel in ("all", "nsubj", "xcomp")]
    spec = plots.held_out_margins(pd.DataFrame(rows), relations=("all", "nsubj")).to_dict()
    data = next(iter(spec["datasets"].values()))
    assert {r["relation"] for r in data} == {"all", "nsubj"} and len(data) == 8
    assert spec["facet"]["field"] == "relation" and spec["facet"]["sort"] == ["all", "nsubj"]


def test_head_positions_plots_each_runs_last_checkpoint():
    rows = [dict(run=run, step=step, layer=0, head=h, direction="dep", uas=0.1 * h, modal_offset=1,
                 share=0.5, uas_off_mode=0.05) for run, last in [("a", 500), ("b", 1000)]
            for step in (0, last) for h in range(3)]
    spec = plots.head_positions(pd.DataFrame(rows)).to_dict()
    data = next(iter(spec["datasets"].values()))
    assert sorted({(r["run"], r["step"]) for r in data}) == [("a", 500), ("b", 1000)]
    assert len(data) == 6


def test_extended_positions_draws_both_readings_their_floors_and_the_threshold():
    rows = [dict(run=run, step=step, sas_uas=0.16 + 0.01 * k, wide_uas=0.09 + 0.01 * k, uniform_uas=0.157,
                 wide_uniform_uas=0.085) for run in ("a", "b") for k, step in enumerate((0, 500, 1000))]
    spec = plots.extended_positions(pd.DataFrame(rows)).to_dict()
    lines, floors, limit = (spec["datasets"][layer["data"]["name"]] for layer in spec["layer"])
    assert len(lines) == 12 and {r["reading"] for r in lines} == {"sentences that fit", "every sentence"}
    assert sorted(r["uas"] for r in floors) == [0.085, 0.085, 0.157, 0.157]
    assert limit == [{"uas": 0.15}]


def test_attention_scale_draws_the_head_mean_and_the_sas_of_the_same_runs_and_steps():
    rows = [dict(run=run, step=step, layer=layer, head=head, logit_spread=(layer + head + 1) * 0.01 * (1 + step))
            for run in ("a", "b") for step in (0, 100, 500) for layer in (0, 1) for head in (0, 1)]
    logs = pd.DataFrame([dict(run=run, step=step, sas_uas=0.1 + step / 1e4) for run in ("a", "b", "c")
                         for step in (0, 250, 500, 750)])
    spec = plots.attention_scale(pd.DataFrame(rows), logs).to_dict()
    left, right = (spec["datasets"][panel["data"]["name"]] for panel in spec["hconcat"])
    assert sorted((r["run"], r["step"]) for r in left) == [(run, s) for run in "ab" for s in (0, 100, 500)]
    assert [r["logit_spread"] for r in left if r["step"] == 100] == pytest.approx([0.02 * 101] * 2)  # mean of the heads
    assert {r["run"] for r in right} == {"a", "b"} and max(r["step"] for r in right) == 500
    assert len(spec["params"]) == 1 and len(spec["params"][0]["views"]) == 1  # the legend selection, added once
    assert "hconcat" not in plots.attention_scale(pd.DataFrame(rows)).to_dict()


def test_word_rules_draws_each_rule_with_its_floor_logged_rule_first():
    rows = [dict(run=run, step=step, to=to, sas_uas=(0.1 if to == "sum" else 0.05) + step / 1e4, sas_head="L0H0-dep",
                 uniform_uas=0.1 if to == "sum" else 0.04, uniform_uas_random=0.11 if to == "sum" else 0.06)
            for to in ("mean", "sum") for run in ("a", "b") for step in (0, 250, 500)]
    spec = plots.word_rules(pd.DataFrame(rows)).to_dict()
    panels = spec["hconcat"]
    assert len(panels) == 2 and "summed" in panels[0]["layer"][0]["encoding"]["y"]["title"]
    lines = [spec["datasets"][p["layer"][0]["data"]["name"]] for p in panels]
    assert [r["sas_uas"] for r in lines[0] if r["step"] == 0] == [0.1, 0.1]  # the sum panel has the sum's rows
    assert [r["sas_uas"] for r in lines[1] if r["step"] == 0] == [0.05, 0.05]
    floors = [spec["datasets"][p["layer"][1]["data"]["name"]] for p in panels]
    assert [f[0]["uniform_uas_random"] for f in floors] == [0.11, 0.06]  # the uniform head with random ties
    assert len(spec["params"]) == 1  # the legend selection, added once
