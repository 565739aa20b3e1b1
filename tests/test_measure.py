"""measure: per-checkpoint tables of a run, cached in the run folder."""

import numpy as np
import pandas as pd
import pytest

from sasutils import measure, train as T


def _data(tokenizer):
    from sasutils.corpus import CorpusData, Packed

    g = np.random.default_rng(0)
    ids = g.integers(10, len(tokenizer), (32, 16)).astype(np.int32)
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    par = np.full((32, 16), -1, dtype=np.int16)
    return CorpusData(tokenizer, Packed(ids, par), Packed(ids[:16], par[:16]), 80, [])


@pytest.fixture(scope="module")
def run_dir(small_tokenizer, tmp_path_factory):
    data = _data(small_tokenizer)
    cfg = T.make_config("cpu-tiny", steps=4, warmup=1, batch_size=8, seq_len=16, hidden_size=32, intermediate_size=64,
                        eval_every=2, checkpoint_every=2, checkpoint_log_steps=(), eval_batches=1)
    out = tmp_path_factory.mktemp("runs") / "r"
    T.train(cfg, out, data=data, progress=False)
    return out


def test_offset_profiles_one_row_per_head_and_checkpoint_and_cached(run_dir):
    df = measure.offset_profiles([run_dir], n_sentences=20, progress=False)
    steps = [s for s, _ in T.list_checkpoints(run_dir)]
    assert sorted(df.step.unique()) == steps and len(steps) >= 2
    assert len(df) == len(steps) * 2 * 8 * 2  # checkpoints x layers x heads x directions
    assert df.share.between(0, 1).all() and (df.uas_off_mode <= df.uas + 1e-12).all()
    cached = sorted((run_dir / "measure").glob("offsets_*.parquet"))
    assert len(cached) == len(steps)
    mtimes = [p.stat().st_mtime_ns for p in cached]
    again = measure.offset_profiles([run_dir], n_sentences=20, progress=False)
    assert again.equals(df) and [p.stat().st_mtime_ns for p in cached] == mtimes  # read back, not recomputed


def test_offset_profiles_names_the_run_without_those_checkpoints(run_dir):
    with pytest.raises(FileNotFoundError, match="step"):
        measure.offset_profiles([run_dir], steps=[999], progress=False)


def _uas_rows(rel, head_uas, offset_uas, n=200):
    """A measure_run-like table for one (run, step, relation): heads (layer 0, head h, dep) and offsets."""
    rows = [dict(run="r", step=5, layer=0, head=h, direction="dep", relation=rel, n=n, uas=u)
            for h, u in enumerate(head_uas)]
    rows += [dict(run="r", step=5, layer=-1, head=-1, direction=f"offset{k:+d}", relation=rel, n=n, uas=u)
             for k, u in offset_uas.items()]
    return pd.DataFrame(rows)


def test_held_out_relations_choose_on_one_table_and_score_on_the_other():
    sel = pd.concat([_uas_rows("all", [0.30, 0.40], {1: 0.35, -1: 0.20}), _uas_rows("det", [0.5], {1: 0.6}, n=50),
                     _uas_rows("obj", [0.5], {-2: 0.3}), _uas_rows("case", [0.6, 0.1], {1: 0.3})])
    ev = pd.concat([_uas_rows("all", [0.45, 0.33], {1: 0.31, -1: 0.40}), _uas_rows("det", [0.5], {1: 0.6}, n=50),
                    _uas_rows("case", [0.6, 0.1], {1: 0.3})])
    out = measure.held_out_relations(sel, ev, min_arcs=100)
    assert out.relation.tolist() == ["all", "case"]  # det: too few arcs; obj: not in the evaluation table
    assert out.set_index("relation").above.tolist() == [False, True]  # case: 0.6 vs 0.3 on 200 arcs
    r = out.iloc[0]
    assert measure.held_out_relations(sel.iloc[:0], ev).empty
    # chosen on sel: head 1 (0.40) and offset +1 (0.35); scored on ev: 0.33 and 0.31 -- not ev's own maxima
    assert r.best_head == "L0H1-dep" and r.offset == 1
    assert r.head_uas == pytest.approx(0.33) and r.offset_uas == pytest.approx(0.31)
    assert r.margin == pytest.approx(0.02) and r.sel_margin == pytest.approx(0.05)
    assert r.se_max == pytest.approx((0.33 * 0.67 / 200) ** 0.5 + (0.31 * 0.69 / 200) ** 0.5) and not r.above


def test_mcnemar_p_known_values():
    assert measure.mcnemar_p(0, 0) == 1.0
    assert measure.mcnemar_p(5, 0) == pytest.approx(2 / 32) == measure.mcnemar_p(0, 5)
    assert measure.mcnemar_p(3, 3) == 1.0
    assert measure.mcnemar_p(20, 5) == pytest.approx(2 * sum(__import__("math").comb(25, x) for x in range(6)) / 2**25)


def test_sign_flip_p_and_bh_adjust_known_values():
    assert measure.sign_flip_p(np.zeros(5)) == 1.0
    # 6 sentences, all +1: only the all-plus and all-minus patterns reach |6| (2 of 64)
    assert measure.sign_flip_p(np.ones(6), draws=20_000) == pytest.approx(2 / 64, abs=0.006)
    assert measure.sign_flip_p(np.array([3.0, -3.0])) == 1.0
    q = measure.bh_adjust(np.array([0.01, 0.04, 0.03, 0.5]))
    # sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.06, 0.0533, 0.5 -> running minimum from the top
    assert np.allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert measure.bh_adjust(np.array([])).size == 0


def test_paired_summary_counts_runs_and_refuses_repeated_rows():
    rows = [dict(run=run, relation=rel, n=100, margin=m, mirror_margin=m, p_sentences=p, p_mirror_sentences=p)
            for run, m, p in [("a", 0.1, 1e-6), ("b", -0.1, 1e-6), ("c", 0.01, 0.6)] for rel in ("all", "nsubj")]
    s = measure.paired_summary(pd.DataFrame(rows)).set_index("relation")
    assert s.index[0] == "all" and s.loc["nsubj", "runs"] == 3
    assert (s.above == 1).all() and (s.below == 1).all() and (s.above_edge == 1).all()
    with pytest.raises(ValueError, match="several rows"):
        measure.paired_summary(pd.DataFrame(rows + rows[:1]))
    q = measure.add_fdr(pd.DataFrame(rows))
    assert np.allclose(q.q, measure.bh_adjust(q.p_sentences)) and np.allclose(q.q_edge, q.q)
    assert measure.paired_summary(pd.DataFrame(columns=list(rows[0]))).empty


def test_paired_margins_agree_with_the_tables(run_dir):
    sel, _ = measure.measure_run(run_dir, "ewt-dev", n_sentences=30, progress=False)
    ev, _ = measure.measure_run(run_dir, "ewt-test", n_sentences=30, progress=False)
    held = measure.held_out_relations(sel, ev, min_arcs=20)
    held = held[held.step == held.step.max()]
    assert "all" in set(held.relation) and "all+root" not in set(held.relation)
    p = measure.paired_margins(held, [run_dir], treebank="ewt-test", n_sentences=30, progress=False)
    assert len(p) == len(held)
    # b - c = n (p_head - p_offset): the paired counts add up to the table's margin
    assert np.allclose(p.head_only - p.offset_only, p.n * p.margin, atol=1e-6)
    assert np.allclose(p.head_only_mirror - p.mirror_only, p.n * p.mirror_margin, atol=1e-6)
    assert (p.mirror_uas >= p.offset_uas).all() and p.p_paired.between(0, 1).all()
    assert p.p_sentences.between(0, 1).all() and p.p_mirror_sentences.between(0, 1).all()
    # the head's and the offset's arcs recomputed by another path (sas.attention_arcs), over all words
    from transformers import AutoTokenizer
    from sasutils import sas
    from sasutils.treebank import load_treebank

    r = p[p.relation == "all"].iloc[0]
    model, _ = T.load_checkpoint(dict(T.list_checkpoints(run_dir))[int(r.step)])
    enc = sas.first_n(sas.encode_treebank(load_treebank("ewt-test"), AutoTokenizer.from_pretrained(run_dir / "tokenizer"),
                                          16), 30)
    arcs = sas.attention_arcs(model, enc, range(len(enc)), [("w",) * len(h) for h in enc.heads])
    a = arcs[(arcs.layer == r.layer) & (arcs["head"] == r["head"]) & (arcs.direction == r.direction) & (arcs.gold >= 0)]
    head_ok, off_ok = a.is_gold.to_numpy(), (a.gold == a.i + r.offset).to_numpy()
    assert (r.head_only, r.offset_only) == (int((head_ok & ~off_ok).sum()), int((~head_ok & off_ok).sum()))
    with pytest.raises(ValueError, match="not in run_dirs"):
        measure.paired_margins(held.assign(run="elsewhere"), [run_dir], progress=False)


def test_edge_baseline_finds_the_sentence_count_from_the_logged_offset(run_dir):
    from transformers import AutoTokenizer
    from sasutils import sas
    from sasutils.treebank import load_treebank

    enc = sas.encode_treebank(load_treebank("ewt-dev"), AutoTokenizer.from_pretrained(run_dir / "tokenizer"), 16)
    plain, edge = (sas.offset_baselines(sas.first_n(enc, 30), mirror=m) for m in (False, True))
    logged = plain[plain.relation == "all"].uas.max()
    want = edge[edge.relation == "all"].uas.max()
    assert want >= logged
    assert measure.edge_baseline(run_dir, logged, candidates=(10, 30)) == pytest.approx(want, abs=1e-12)
    assert measure.edge_baseline(run_dir, logged, candidates=(10,)) == pytest.approx(want, abs=1e-12)  # found anyway
    with pytest.raises(ValueError, match="no number"):
        measure.edge_baseline(run_dir, 0.999, candidates=(10, 30))


def test_fill_edge_baseline_fills_only_runs_without_it(run_dir, tmp_path):
    from transformers import AutoTokenizer
    from sasutils import sas
    from sasutils.treebank import load_treebank

    enc = sas.encode_treebank(load_treebank("ewt-dev"), AutoTokenizer.from_pretrained(run_dir / "tokenizer"), 16)
    plain = sas.offset_baselines(sas.first_n(enc, 300))
    logged = plain[plain.relation == "all"].uas.max()
    logs = pd.DataFrame({"run": [run_dir.name] * 3 + ["other"] * 2, "step": [0, 2, 4, 0, 2],
                         "offset_best": [logged, np.nan, logged, 0.3, 0.3],
                         "offset_edge_best": [np.nan] * 3 + [0.31, 0.31]}, index=[5, 5, 6, 7, 8])
    out = measure.fill_edge_baseline(logs, run_dir.parent)
    want = measure.edge_baseline(run_dir, logged)
    mine = out[out.run == run_dir.name]
    assert mine.offset_edge_best.tolist()[0] == want and np.isnan(mine.offset_edge_best.tolist()[1])
    assert out[out.run == "other"].offset_edge_best.tolist() == [0.31, 0.31]  # already there: untouched
    with pytest.warns(UserWarning, match="without a tokenizer"):
        measure.fill_edge_baseline(logs.assign(run="missing", offset_edge_best=np.nan), tmp_path)


def test_position_ablation_logs_both_readings_per_checkpoint_and_caches(run_dir):
    df = measure.position_ablation([run_dir], n_sentences=20, loss=False, progress=False)
    steps = [s for s, _ in T.list_checkpoints(run_dir)]
    assert list(df.step) == steps and df.run.eq(run_dir.name).all()
    assert df[["sas_uas", "blind_uas", "sas_soft", "blind_soft", "uniform_uas", "uniform_uas_random"]].apply(
        lambda c: c.between(0, 1)).all().all()
    cached = sorted((run_dir / "measure").glob("uas*_heads_*.parquet"))
    assert len(cached) == 2 * len(steps)  # with and without order
    mtimes = [p.stat().st_mtime_ns for p in cached]
    assert measure.position_ablation([run_dir], n_sentences=20, loss=False, progress=False).equals(df)
    assert [p.stat().st_mtime_ns for p in cached] == mtimes  # read back, not recomputed
    with pytest.raises(FileNotFoundError, match="step"):
        measure.position_ablation([run_dir], steps=[999], progress=False)


def test_position_ablation_loss_reproduces_the_logged_held_out_loss(run_dir, small_tokenizer, monkeypatch):
    import sasutils.corpus

    monkeypatch.setattr(sasutils.corpus, "load_corpus", lambda *a, **k: _data(small_tokenizer))
    df = measure.position_ablation([run_dir], n_sentences=20, progress=False)
    logged = T.read_metrics(run_dir).dropna(subset=["eval_loss"]).set_index("step").eval_loss
    assert np.allclose(df.set_index("step").eval_loss, logged.loc[df.step], atol=1e-5)  # the same batches and masks
    assert (df.blind_loss != df.eval_loss).all()


def test_position_ablation_names_a_run_whose_tokenizer_differs_from_the_cache(run_dir, small_tokenizer, monkeypatch):
    import sasutils.corpus
    import sasutils.train

    monkeypatch.setattr(sasutils.corpus, "load_corpus", lambda *a, **k: _data(small_tokenizer))
    monkeypatch.setattr(sasutils.train, "_vocab_moves", lambda *a: "3 pieces have other ids")
    for p in (run_dir / "measure").glob("loss_blind_*"):
        p.unlink()
    with pytest.raises(measure.TokenizerMismatch, match=str(run_dir)):
        measure.position_ablation([run_dir], n_sentences=20, progress=False)


def test_position_ablation_loss_none_keeps_the_sas_of_a_run_with_another_numbering(run_dir, small_tokenizer,
                                                                                     monkeypatch):
    import sasutils.corpus
    import sasutils.train

    monkeypatch.setattr(sasutils.corpus, "load_corpus", lambda *a, **k: _data(small_tokenizer))
    monkeypatch.setattr(sasutils.train, "_vocab_moves", lambda *a: "3 pieces have other ids")
    for p in (run_dir / "measure").glob("loss_blind_*"):
        p.unlink()
    with pytest.warns(UserWarning, match=str(run_dir)):
        df = measure.position_ablation([run_dir], n_sentences=20, loss=None, progress=False)
    assert df.eval_loss.isna().all() and df.blind_loss.isna().all()
    sas_only = measure.position_ablation([run_dir], n_sentences=20, loss=False, progress=False)
    assert df.drop(columns=["eval_loss", "blind_loss"]).equals(sas_only)


def test_read_each_leaves_out_runs_it_cannot_read_and_names_them(run_dir, tmp_path, capsys):
    empty = tmp_path / "no_checkpoints"
    (empty / "checkpoints").mkdir(parents=True)
    table, skipped = measure.read_each(measure.position_ablation, [run_dir, empty], n_sentences=20, loss=False,
                                       progress=False)
    assert table.equals(measure.position_ablation([run_dir], n_sentences=20, loss=False, progress=False))
    assert list(skipped) == ["no_checkpoints"] and "no checkpoints" in skipped["no_checkpoints"]
    out = capsys.readouterr().out
    assert "position_ablation: 1 of 2 runs" in out and "no_checkpoints: left out" in out
    assert measure.read_each(measure.position_ablation, [empty], report=False) == (None, {"no_checkpoints": skipped[
        "no_checkpoints"]})
    with pytest.raises(TypeError):  # other errors are not swallowed
        measure.read_each(measure.position_ablation, [run_dir], no_such_parameter=1)


def test_extended_positions_reading_scores_every_sentence_with_a_grown_table(run_dir, ewt_dev, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    from sasutils import model as M, sas

    run = shutil.copytree(run_dir, tmp_path / run_dir.name)  # a cache of its own, so nothing is read back
    df = measure.extended_positions_reading([run], n_positions=160, n_sentences=40, progress=False)
    ckpts = T.list_checkpoints(run)
    assert list(df.step) == [s for s, _ in ckpts] and (df.seq_len == 16).all()
    tok = AutoTokenizer.from_pretrained(run / "tokenizer")
    fit = sas.first_n(sas.encode_treebank(ewt_dev, tok, 16), 40)
    wide = sas.encode_treebank(ewt_dev[:40], tok, 160)  # the first 40 sentences, most longer than 16 pieces
    step, path = ckpts[-1]
    row = df.set_index("step").loc[step]
    m = T.load_checkpoint(path)[0]
    assert np.isclose(row.sas_uas, sas.summarize(sas.score_uas(m, fit, baselines=False))["sas_uas"])
    M.extend_positions(m, 160)  # seed 0, BERT's normal rows, as the reading's defaults
    assert np.isclose(row.wide_uas, sas.summarize(sas.score_uas(m, wide, baselines=False))["sas_uas"])
    assert row.wide_uas != row.sas_uas
    assert np.isclose(row.uniform_uas, sas.uniform_baseline(fit)["dep"])
    assert np.isclose(row.wide_uniform_uas, sas.uniform_baseline(wide)["dep"])
    # the best "parent = i + k" over words, counted by hand
    best = max(np.mean(np.concatenate([(h == np.arange(len(h)) + k)[h >= 0] for h in wide.heads]))
               for k in sas.OFFSETS)
    assert np.isclose(row.wide_offset_best, best)
    # first piece of word w sits after [CLS] and the pieces of words 0..w-1
    first = [1 + np.concatenate([[0], np.cumsum(np.bincount(p2w[p2w >= 0]))[:-1]]) for p2w in wide.p2w]
    scored = np.concatenate([f[h >= 0] for f, h in zip(first, wide.heads)])
    assert np.isclose(row.wide_beyond, np.mean(scored >= 16)) and 0.3 < row.wide_beyond < 1
    in_long = np.concatenate([np.full((h >= 0).sum(), len(ids) > 16) for h, ids in zip(wide.heads, wide.ids)])
    assert np.isclose(row.wide_long, np.mean(in_long)) and row.wide_long > row.wide_beyond
    with pytest.raises(ValueError, match="n_positions=16"):
        measure.extended_positions_reading([run], n_positions=16, n_sentences=40, progress=False)
    with pytest.raises(ValueError, match="n_positions=20"):
        measure.extended_positions_reading([run], n_positions=20, n_sentences=40, progress=False)


def test_attention_scale_reads_the_weights_and_the_attention_of_each_checkpoint(run_dir, ewt_dev):
    import torch
    from transformers import AutoTokenizer

    from sasutils import model as model_lib, sas

    tab = measure.attention_scale([run_dir], n_sentences=20, progress=False)
    steps = [s for s, _ in T.list_checkpoints(run_dir)]
    assert sorted(set(tab.step)) == steps and len(tab) == len(steps) * 2 * 8  # layers x heads
    step, path = T.list_checkpoints(run_dir)[-1]
    model, _ = T.load_checkpoint(path)
    att = model.bert.encoder.layer[1].attention.self
    row = tab[(tab.step == step) & (tab.layer == 1) & (tab["head"] == 3)].iloc[0]
    assert row.query_rms == pytest.approx(att.query.weight.detach().double().pow(2).mean().sqrt().item())
    assert row.key_rms == pytest.approx(att.key.weight.detach().double().pow(2).mean().sqrt().item())
    # by hand: head 3 of layer 1, one sentence at a time, the logits' std and 1 - H/log n over each query row
    enc = sas.first_n(sas.encode_treebank(ewt_dev, AutoTokenizer.from_pretrained(run_dir / "tokenizer"), 16), 20)
    spreads, deficits = [], []
    with torch.no_grad(), model_lib.attention_weights(model):
        model.eval()
        for ids in enc.ids:
            p = model.bert(input_ids=torch.as_tensor(ids)[None], output_attentions=True).attentions[1][0, 3].double()
            spreads += p.log().std(-1, unbiased=False).tolist()
            deficits += (1 + (p * p.log()).sum(-1) / np.log(len(ids))).tolist()
    assert row.logit_spread == pytest.approx(np.mean(spreads), rel=1e-4)
    assert row.entropy_deficit == pytest.approx(np.mean(deficits), rel=1e-3, abs=1e-6)
    with pytest.raises(FileNotFoundError, match="at steps"):
        measure.attention_scale([run_dir], steps=[999], progress=False)


def test_word_rule_readings_score_each_checkpoint_under_both_rules(run_dir, ewt_dev, tmp_path):
    from transformers import AutoTokenizer

    from sasutils import sas

    tab = measure.word_rule_readings([run_dir], n_sentences=20, progress=False)
    steps = [s for s, _ in T.list_checkpoints(run_dir)]
    assert len(tab) == 2 * len(steps) and set(tab.to) == set(sas.TO_WORD)
    step, path = T.list_checkpoints(run_dir)[-1]
    model, _ = T.load_checkpoint(path)
    enc = sas.first_n(sas.encode_treebank(ewt_dev, AutoTokenizer.from_pretrained(run_dir / "tokenizer"), 16), 20)
    for to in sas.TO_WORD:  # by hand: the scorer under each rule, and the uniform head's floor
        row = tab[(tab.step == step) & (tab.to == to)].iloc[0]
        assert row.sas_uas == sas.summarize(sas.score_uas(model, enc, baselines=False, to=to))["sas_uas"]
        assert row.uniform_uas == sas.uniform_baseline(enc, to=to)["dep"]
    # the sum is the logged rule: the same reading as position_ablation's, computed afresh on a copy without the cache
    import shutil

    fresh = tmp_path / run_dir.name
    shutil.copytree(run_dir, fresh, ignore=shutil.ignore_patterns("measure"))
    pa = measure.position_ablation([fresh], n_sentences=20, loss=False, progress=False)
    assert np.allclose(pa.sas_uas, tab[tab.to == "sum"].sas_uas)
    mean_cache = sorted((run_dir / "measure").glob("uas_mean_*_heads_*.parquet"))
    assert len(mean_cache) == len(steps)
    assert measure.word_rule_readings([run_dir], n_sentences=20, progress=False).equals(tab)


def test_reread_log_replaces_only_the_sas_readings_and_names_missing_steps():
    logs = pd.DataFrame(dict(run=["a"] * 4 + ["b"], step=[0, 10, 20, 30, 0], eval_loss=[9.0, 8, 7, 6, 9],
                             sas_uas=[0.1, np.nan, 0.2, 0.3, 0.1]))
    readings = pd.DataFrame(dict(run="a", step=[0, 20, 30, 0, 20, 30], to=["sum"] * 3 + ["mean"] * 3,
                                 sas_uas=[0.1, 0.2, 0.3, 0.05, 0.06, 0.25]))
    out = measure.reread_log(logs, readings, "mean")
    assert out.run.eq("a").all()  # runs without readings are left out
    assert out.sas_uas.tolist()[:1] + out.sas_uas.tolist()[2:] == [0.05, 0.06, 0.25] and np.isnan(out.sas_uas.iloc[1])
    assert out.eval_loss.tolist() == [9.0, 8, 7, 6]
    assert measure.reread_log(logs, readings, "sum").sas_uas.equals(logs.sas_uas.iloc[:4])
    with pytest.raises(ValueError, match=r"a: \[30\]"):
        measure.reread_log(logs, readings[readings.step != 30], "mean")
    with pytest.raises(ValueError, match="to="):
        measure.reread_log(logs, readings, "max")


def test_rule_verdicts_judge_each_run_under_each_rule_and_name_the_runs_left_out():
    steps = np.arange(0, 5001, 250)
    loss = np.where(steps < 1000, 6.4, np.where(steps < 1500, 6.4 - (steps - 1000) / 500 * 1.0, 5.4))
    sas_sum = np.where(steps < 1000, 0.17, np.where(steps < 1500, 0.35, 0.36))  # above 0.15 before the drop
    logs = pd.concat([pd.DataFrame(dict(run=run, step=steps, eval_loss=loss, sas_uas=sas_sum, offset_best=0.3))
                      for run in ("a", "b")])
    readings = pd.concat([pd.DataFrame(dict(run="a", step=steps, to="sum", sas_uas=sas_sum)),
                          pd.DataFrame(dict(run="a", step=steps, to="mean", sas_uas=sas_sum - 0.05)),
                          pd.DataFrame(dict(run="b", step=steps, to="sum", sas_uas=sas_sum)),
                          pd.DataFrame(dict(run="b", step=steps[1:], to="mean", sas_uas=sas_sum[1:]))])
    table, skipped = measure.rule_verdicts(logs, readings)
    assert table.run.tolist() == ["a", "a"] and table.to.tolist() == ["sum", "mean"]
    assert table.uas_before.tolist() == pytest.approx([0.17, 0.12])
    assert table.uas_ok.tolist() == [False, True]  # the same run, judged on each reading
    assert skipped == {"b": "no reading at logged SAS step(s) [0]"}
    # a run read under one rule only, a run without metrics, a repeated row: named, not silently dropped
    one_rule = pd.DataFrame(dict(run="c", step=steps, to="sum", sas_uas=sas_sum))
    no_log = pd.DataFrame(dict(run="d", step=steps, to="mean", sas_uas=sas_sum)).pipe(
        lambda d: pd.concat([d, d.assign(to="sum")]))
    logs_c = pd.concat([logs, logs[logs.run == "a"].assign(run="c")])
    _, skipped = measure.rule_verdicts(logs_c, pd.concat([readings, one_rule, no_log]))
    assert skipped["c"] == "no reading under rule(s) ['mean']" and skipped["d"] == "no metrics in the logs"
    with pytest.raises(ValueError, match="more than one row"):
        measure.rule_verdicts(logs, pd.concat([readings, readings.iloc[:1]]))


def test_logged_gap_is_zero_where_the_summed_reading_is_the_logged_one():
    logs = pd.DataFrame(dict(run=["a", "a", "b", "b"], step=[0, 250, 0, 250], sas_uas=[0.1, 0.2, 0.1, 0.2]))
    readings = pd.DataFrame(dict(run=["a", "a", "b", "b", "a"], step=[0, 250, 0, 250, 0], to=["sum"] * 4 + ["mean"],
                                 sas_uas=[0.1, 0.2, 0.1, 0.25, 0.9]))
    assert measure.logged_gap(logs, readings).round(6).to_dict() == {"a": 0.0, "b": 0.05}
