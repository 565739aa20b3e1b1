import pytest
import numpy as np
import torch

from sasutils import train as T


def test_checkpoint_schedule_dense_early_then_regular():
    cfg = T.make_config("cpu-tiny", steps=3000)
    s = T.checkpoint_steps(cfg)
    assert s[:6] == [0, 10, 20, 50, 100, 200] and s[-1] == 3000
    assert {500, 1000, 2500} <= set(s) and 750 not in s


def test_batches_cover_each_epoch_once_and_depend_only_on_step():
    n, b = 100, 32
    seen = np.concatenate([T.batch_indices(n, b, seed=3, step=s) for s in range(25)])  # 8 epochs
    for e in range(7):
        assert sorted(seen[e * n:(e + 1) * n]) == list(range(n))
    assert np.array_equal(T.batch_indices(n, b, 3, 17), T.batch_indices(n, b, 3, 17))
    assert not np.array_equal(T.batch_indices(n, b, 3, 17), T.batch_indices(n, b, 4, 17))


def test_mask_tokens_rates_and_specials(small_tokenizer):
    tok = small_tokenizer
    ids = torch.randint(10, len(tok), (200, 32))
    ids[:, 0], ids[:, -1], ids[:, -3:-1] = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    inp, labels = T.mask_tokens(ids, tok, 0.3, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert not chosen[:, [0, -3, -2, -1]].any()
    assert abs(chosen[:, 1:-3].float().mean().item() - 0.3) < 0.02
    assert abs((inp[chosen] == tok.mask_token_id).float().mean().item() - 0.8) < 0.03
    assert torch.equal(labels[chosen], ids[chosen])


def test_run_names():
    base = T.make_config("cpu-tiny")
    assert T.run_name(base).startswith("cpu-tiny_base_seed0_")
    assert "_sasminus-k3000_lam0.5_" in T.run_name(T.make_config("cpu-tiny", lam=0.5, suppress_steps=3000))
    assert "_sasplus_lam-0.5_" in T.run_name(T.make_config("cpu-tiny", lam=-0.5, suppress_steps=-1))
    assert T.run_name(T.make_config("cpu-tiny", lr=1e-3)) != T.run_name(base)


def test_micro_batches_accumulate_to_the_same_step(small_tokenizer):
    """Gradient accumulation over micro-batches gives the same update as one batch (CPU, float tolerance)."""
    from sasutils.corpus import CorpusData, Packed

    g = np.random.default_rng(0)
    ids = g.integers(10, len(small_tokenizer), (64, 16)).astype(np.int32)
    ids[:, 0], ids[:, -1] = small_tokenizer.cls_token_id, small_tokenizer.sep_token_id
    par = np.where(g.random((64, 16)) < 0.5, g.integers(1, 15, (64, 16)), -1).astype(np.int16)
    data = CorpusData(small_tokenizer, Packed(ids, par), Packed(ids[:16], par[:16]), 80, [])
    logs = []
    for mb in (None, 5):
        cfg = T.make_config("cpu-tiny", steps=3, warmup=1, batch_size=16, seq_len=16, hidden_size=32,
                            intermediate_size=64, eval_every=3, checkpoint_log_steps=(), lam=0.5,
                            suppress_steps=-1, micro_batch=mb, eval_batches=1)
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            logs.append(T.train(cfg, d, data=data, progress=False))
    a, b = logs
    assert np.allclose(a.eval_loss, b.eval_loss, atol=1e-5) and np.allclose(a.train_loss.dropna(), b.train_loss.dropna(), atol=1e-5)
    assert T.run_name(T.make_config("cpu-tiny", micro_batch=8)) == T.run_name(T.make_config("cpu-tiny"))


def test_list_param_parses_papermill_strings():
    from sasutils.experiments import list_param

    assert list_param("[0, 1, 2]", "seeds") == [0, 1, 2]
    assert list_param("[{'lr': 0.001}]", "grid") == [{"lr": 0.001}]
    assert list_param("runs/x_*", "runs") == ["runs/x_*"]
    assert list_param((1, 2), "k") == [1, 2] and list_param(3, "k") == [3]
    import pytest

    with pytest.raises(ValueError, match="parameter seeds"):
        list_param([], "seeds")
    assert list_param([], "steps", allow_empty=True) == [] == list_param(None, "steps", allow_empty=True)
    assert list_param("[0, 500]", "steps", allow_empty=True, of=int) == [0, 500]
    for bad in ("[0, 'x']", [0, 1.5], [True]):
        with pytest.raises(ValueError, match="parameter position_ablation_steps=.*type int"):
            list_param(bad, "position_ablation_steps", of=int)


def test_metric_settings_fill_defaults_and_name_a_bad_value():
    import pytest

    from sasutils.experiments import callbacks_for, metric_settings

    assert metric_settings()["sas_sentences"] == 300 and metric_settings(sas_every=5)["sas_every"] == 5
    on = dict(sas_every=250, blimp_every=500)
    for name, bad in (("sas_sentences", -5), ("sas_sentences", 0), ("blimp_per_paradigm", 0), ("sas_every", -1),
                      ("blimp_every", 1.5)):
        with pytest.raises(ValueError, match=f"parameter {name}="):
            metric_settings(**{**on, name: bad})
        with pytest.raises(ValueError, match=f"parameter {name}="):  # before any callback is built
            callbacks_for({"seq_len": 64}, None, **{**on, name: bad})
    assert metric_settings(sas_sentences=0, blimp_per_paradigm=0)["sas_every"] == 0  # counts of metrics that are off


def test_threads_must_be_a_positive_integer():
    import pytest

    assert T.make_config("cpu-tiny", threads=2)["threads"] == 2
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="parameter threads="):
            T.make_config("cpu-tiny", threads=bad)


def test_relation_table_from_logs():
    import pandas as pd

    from sasutils.measure import relation_table

    logs = pd.DataFrame({"run": ["a", "a"], "step": [0, 10], "uas/nsubj": [0.2, 0.5], "offset/nsubj": [0.3, 0.3],
                         "uas/obj": [float("nan"), 0.4], "offset/obj": [0.35, 0.35]})
    t = relation_table(logs)
    assert len(t) == 3 and set(t.relation) == {"nsubj", "obj"}
    assert t[(t.relation == "nsubj") & (t.step == 10)].margin.iloc[0] == pytest.approx(0.2)


def test_lr_schedule_constant_and_later_defaults_keep_run_names():
    base = T.make_config("cpu-tiny", seed=0)
    const = T.make_config("cpu-tiny", seed=0, lr_schedule="constant")
    assert [T.lr_at(const, s) for s in (0, 199, 200, 4999)] == pytest.approx([1e-5, 2e-3, 2e-3, 2e-3])
    assert T.lr_at(base, 4999) < 1e-5  # the default decays to zero
    # options added later are left out of the identity at their defaults, so published runs keep their names
    assert "lr_schedule" not in T.identity(base) and "init_range" not in T.identity(base)
    assert T.run_name(base) == "cpu-tiny_base_seed0_c3b3d1"
    assert T.run_name(const) != T.run_name(base)
    assert T.run_name(T.make_config("cpu-tiny", seed=0, init_range=0.05)) != T.run_name(base)
    with pytest.raises(ValueError, match="lr_schedule"):
        T.make_config("cpu-tiny", lr_schedule="cosine")
    with pytest.raises(ValueError, match="init_range"):
        T.make_config("cpu-tiny", init_range=0)


def test_init_range_sets_the_initial_weight_scale():
    from sasutils import model as model_lib

    for r in (0.01, 0.05):
        m = model_lib.build_model(T.make_config("cpu-tiny", init_range=r), 1000, seed=0)
        std = m.bert.embeddings.position_embeddings.weight.std().item()
        assert std == pytest.approx(r, rel=0.05)


@pytest.mark.parametrize("option, value, bad", [("pos_init", "sinusoidal", "rotary"), ("pos_init", "zero", "rotary"), ("bias_init", "unigram", "ones"),
                                              ("ln_placement", "pre", "sandwich"), ("qk_init", 0.1, 0)])
def test_options_added_later_keep_default_run_names(option, value, bad):
    base = T.make_config("cpu-tiny", seed=0)
    other = T.make_config("cpu-tiny", seed=0, **{option: value})
    assert option not in T.identity(base) and T.run_name(other) != T.run_name(base)  # earlier runs keep their names
    with pytest.raises(ValueError, match=option):
        T.make_config("cpu-tiny", **{option: bad})


def test_pos_init_zero_changes_only_the_position_table():
    from sasutils import model as model_lib

    a, b = (model_lib.build_model(T.make_config("cpu-tiny", seed=0, pos_init=p), 1000, seed=0).state_dict()
            for p in ("normal", "zero"))
    key = "bert.embeddings.position_embeddings.weight"
    assert all(torch.equal(a[k], b[k]) for k in a if k != key)
    assert a[key].abs().sum() > 0 and b[key].abs().sum() == 0


@pytest.mark.parametrize("ln", ["post", "pre"])
def test_qk_init_scales_only_query_and_key(ln):
    from sasutils import model as model_lib

    a, b = (model_lib.build_model(T.make_config("cpu-tiny", seed=0, ln_placement=ln, qk_init=f), 1000, seed=0).state_dict()
            for f in (1.0, 0.1))
    changed = sorted(k for k in a if not torch.equal(a[k], b[k]))
    assert changed == sorted(f"bert.encoder.layer.{i}.attention.self.{m}.weight" for i in (0, 1) for m in ("query", "key"))
    assert all(torch.allclose(b[k], 0.1 * a[k]) for k in changed)
    # the logits scale by qk_init^2: attention at init is nearer uniform
    x = torch.randn(1, 20, 128, generator=torch.Generator().manual_seed(0))
    def entropy(sd, i=0):
        q = x @ sd[f"bert.encoder.layer.{i}.attention.self.query.weight"].T
        k = x @ sd[f"bert.encoder.layer.{i}.attention.self.key.weight"].T
        p = torch.softmax(q @ k.transpose(-1, -2) / 128 ** 0.5, -1)
        return -(p * p.log()).sum(-1).mean().item()
    assert np.log(20) - entropy(b) < 0.01 * (np.log(20) - entropy(a))  # 1/100 of the logits: ~1/10,000 of the deficit


def test_pos_init_sinusoidal_changes_only_the_position_table():
    from sasutils import model as model_lib

    base = T.make_config("cpu-tiny", seed=0)
    sin = T.make_config("cpu-tiny", seed=0, pos_init="sinusoidal")
    a, b = (model_lib.build_model(c, 1000, seed=0).state_dict() for c in (base, sin))
    key = "bert.embeddings.position_embeddings.weight"
    assert all(torch.equal(a[k], b[k]) for k in a if k != key)  # a clean ablation: same draw elsewhere
    P = b[key]
    assert P.shape == (64, 128) and P.pow(2).mean().sqrt().item() == pytest.approx(0.02, rel=0.02)
    gram = P @ P.T  # relative structure: P[p].P[q] depends on p - q only
    assert torch.allclose(gram.diagonal(1)[:-1], gram.diagonal(1)[1:], atol=1e-6)
    g0 = a[key] @ a[key].T  # BERT's normal table has no such structure
    assert not torch.allclose(g0.diagonal(1)[:-1], g0.diagonal(1)[1:], atol=1e-6)


def test_reg_attention_words_trains_and_logs_its_term(small_tokenizer, tmp_path):
    from sasutils.corpus import CorpusData, Packed

    g = np.random.default_rng(0)
    ids = g.integers(10, len(small_tokenizer), (32, 16)).astype(np.int32)
    ids[:, 0], ids[:, -1] = small_tokenizer.cls_token_id, small_tokenizer.sep_token_id
    par = np.where(g.random((32, 16)) < 0.5, g.integers(1, 15, (32, 16)), -1).astype(np.int16)
    data = CorpusData(small_tokenizer, Packed(ids, par), Packed(ids[:16], par[:16]), 80, [])
    kw = dict(steps=2, warmup=1, batch_size=16, seq_len=16, hidden_size=32, intermediate_size=64, eval_every=2,
              checkpoint_log_steps=(), lam=0.5, suppress_steps=-1, eval_batches=1)
    log = T.train(T.make_config("cpu-tiny", reg_attention="words", **kw), tmp_path / "w", data=data, progress=False)
    assert np.isfinite(log.train_loss.dropna()).all() and (log.eval_reg_words > log.eval_reg).all()  # specials hold mass
    assert "eval_reg_words" not in T.train(T.make_config("cpu-tiny", **kw), tmp_path / "a", data=data, progress=False)
    assert "reg_attention" not in T.identity(T.make_config("cpu-tiny"))  # earlier runs keep their names
    with pytest.raises(ValueError, match="reg_attention"):
        T.make_config("cpu-tiny", reg_attention="heads")


def test_reg_word_args_read_the_unmasked_ids(small_tokenizer):
    # [CLS] w w [SEP] [CLS] w [SEP] [PAD]; the second piece was randomly replaced by [CLS] during masking
    cls, sep, pad = small_tokenizer.cls_token_id, small_tokenizer.sep_token_id, small_tokenizer.pad_token_id
    ids = torch.tensor([[cls, 20, 21, sep, cls, 22, sep, pad]])
    inp = ids.clone()
    inp[0, 2] = cls
    labels = torch.full_like(ids, -100)
    labels[0, 2] = 21
    attn = (ids != pad).long()
    assert T.reg_word_args(inp, attn, labels, small_tokenizer, T.make_config("cpu-tiny")) == {}
    w = T.reg_word_args(inp, attn, labels, small_tokenizer, T.make_config("cpu-tiny", reg_attention="words"))
    assert w["word_mask"].tolist() == [[False, True, True, False, False, True, False, False]]
    assert w["segment"].tolist() == [[1, 1, 1, 1, 2, 2, 2, 2]]


def test_unigram_bias_starts_training_at_the_unigram_loss():
    from sasutils import model as model_lib

    g = np.random.default_rng(0)
    V = 500
    ids = (g.zipf(1.5, size=(200, 32)) % (V - 10) + 10).astype(np.int32)  # skewed, like text
    ids[:, 0] = 2  # a special piece, left out of the counts
    p = np.bincount(ids[:, 1:].ravel(), minlength=V) / ids[:, 1:].size
    entropy = -(p[p > 0] * np.log(p[p > 0])).sum()
    cfg = T.make_config("cpu-tiny", seed=0, hidden_size=32, intermediate_size=64, seq_len=32, bias_init="unigram")
    plain, uni = (model_lib.build_model(cfg, V, seed=0) for _ in range(2))
    model_lib.set_unigram_bias(uni, ids, special_ids=(0, 2, 3))
    a, b = plain.state_dict(), uni.state_dict()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert changed == ["cls.predictions.bias", "cls.predictions.decoder.bias"]  # one tensor, tied
    x = torch.from_numpy(ids[:50].astype(np.int64))
    labels = x.clone()
    labels[:, 0] = -100
    with torch.no_grad():
        loss_plain = model_lib.masked_lm_loss(plain.eval(), x, torch.ones_like(x), labels)[0].item()
        loss_uni = model_lib.masked_lm_loss(uni.eval(), x, torch.ones_like(x), labels)[0].item()
    assert abs(loss_plain - np.log(V)) < 0.1  # BERT's zero bias: near-uniform predictions
    assert abs(loss_uni - entropy) < 0.15 < np.log(V) - entropy  # the unigram loss (up to smoothing and W h)


def test_a_run_killed_while_saving_its_last_checkpoint_is_not_taken_as_finished(small_tokenizer, tmp_path, monkeypatch):
    """The last step's log row is written after its checkpoint and state: a run whose last row is logged has them,
    and one that died before is resumed, not skipped as finished."""
    from sasutils import experiments
    from sasutils.corpus import CorpusData, Packed

    g = np.random.default_rng(0)
    ids = g.integers(10, len(small_tokenizer), (32, 16)).astype(np.int32)
    ids[:, 0], ids[:, -1] = small_tokenizer.cls_token_id, small_tokenizer.sep_token_id
    par = np.full((32, 16), -1, np.int16)
    data = CorpusData(small_tokenizer, Packed(ids, par), Packed(ids[:16], par[:16]), 80, [])
    cfg = T.make_config("cpu-tiny", steps=4, warmup=1, batch_size=16, seq_len=16, hidden_size=32, intermediate_size=64,
                        eval_every=2, checkpoint_every=2, checkpoint_log_steps=(), eval_batches=1)
    real = T.save_checkpoint

    def dies_at_the_end(model, tok, run_dir, step):
        if step == cfg["steps"]:
            raise KeyboardInterrupt("killed while saving the last checkpoint")
        return real(model, tok, run_dir, step)

    monkeypatch.setattr(T, "save_checkpoint", dies_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, tmp_path / "r", data=data, progress=False)
    assert T.read_metrics(tmp_path / "r").step.max() == 2 and not experiments.finished(cfg, tmp_path / "r")
    monkeypatch.setattr(T, "save_checkpoint", real)
    log = T.train(cfg, tmp_path / "r", data=data, progress=False)  # resumes and finishes
    assert log.step.tolist() == [0, 2, 4] and experiments.finished(cfg, tmp_path / "r")
    assert T.state_step(tmp_path / "r") == 4 and 4 in [s for s, _ in T.list_checkpoints(tmp_path / "r")]
