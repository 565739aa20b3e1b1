"""Issue 8, reliability: resume after kill -9, atomic checkpoints, non-finite losses, malformed inputs,
parameter errors before any compute, determinism on CPU.

Training runs use a tiny model (hidden 32, 2 layers, 40 steps, ~1.5 s each) on a small real corpus
(3,000 parsed Wikipedia sentences, cached under ``$SASUTILS_CACHE`` after the first parse). The broken
input files are in ``tests/data/broken/`` (see its README.md).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import sasutils.corpus as corpus_lib
import sasutils.model as model_lib
import sasutils.train as T
from sasutils import paths
from sasutils.blimp import BlimpError, read_blimp_jsonl
from sasutils.corpus import CorpusError
from sasutils.treebank import ReadStats, TreebankError, read_conllu, read_malt_tab, read_wsj_zip

torch.set_num_threads(1)

BROKEN = Path(__file__).parent / "data" / "broken"
CORPUS = dict(source="wikipedia", n_sentences=3000, vocab_size=1000, seq_len=32, eval_sentences=300)
TINY = dict(steps=40, warmup=5, eval_every=10, checkpoint_every=10, checkpoint_log_steps=(), hidden_size=32,
            intermediate_size=64, num_attention_heads=2, corpus_sentences=3000, vocab_size=1000)


def tiny_cfg(**kw) -> dict:
    return T.make_config("cpu-tiny", **{**TINY, **kw})


@pytest.fixture(scope="session")
def corpus():
    """The small real corpus, built once (the child processes read the same cache)."""
    data = corpus_lib.load_corpus(**CORPUS, progress=False)
    data.cache_root = str(paths.cache_dir())
    return data


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """``reference(cfg)``: the run dir of an uninterrupted run of ``cfg`` (trained once per module)."""
    done: dict[str, Path] = {}

    def get(cfg: dict) -> Path:
        key = json.dumps(cfg, sort_keys=True, default=str)
        if key not in done:
            done[key] = tmp_path_factory.mktemp("reference")
            T.train(cfg, done[key], data=corpus, progress=False)
        return done[key]

    return get


def load_state(run_dir) -> dict:
    return torch.load(Path(run_dir, "state.pt"), weights_only=False)


def assert_same_run(a, b) -> None:
    """Same metrics (every column but ``wall``, exactly), same final weights and optimizer state, same checkpoints."""
    ma, mb = T.read_metrics(a), T.read_metrics(b)
    assert list(ma["step"]) == list(mb["step"]) == sorted(set(ma["step"]))  # no lost or duplicated rows
    pd.testing.assert_frame_equal(ma.drop(columns="wall"), mb.drop(columns="wall"), check_exact=True)
    sa, sb = load_state(a), load_state(b)
    assert sa["step"] == sb["step"]
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    for i in sa["opt"]["state"]:
        for k, v in sa["opt"]["state"][i].items():
            assert torch.equal(v, sb["opt"]["state"][i][k]), (i, k)
    ca, cb = T.list_checkpoints(a), T.list_checkpoints(b)
    assert [s for s, _ in ca] == [s for s, _ in cb]
    for (_, pa), (_, pb) in zip(ca, cb):
        T.verify_checkpoint(pa)
        T.verify_checkpoint(pb)
        wa, wb = load_file(pa / "model.safetensors"), load_file(pb / "model.safetensors")
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), pa.name
    for d in (a, b):  # nothing half-written left behind
        assert not list(Path(d, "checkpoints").glob(".*.tmp")) and not Path(d, "state.pt.tmp").exists()


def assert_last_good(run_dir, step: int) -> None:
    """After a failure: checkpoints up to ``step`` verify, state.pt is at ``step`` and finite."""
    steps = [s for s, _ in T.list_checkpoints(run_dir)]
    assert steps == list(range(0, step + 1, 10))
    for _, p in T.list_checkpoints(run_dir):
        T.verify_checkpoint(p)
    st = load_state(run_dir)
    assert st["step"] == step
    assert all(torch.isfinite(v).all() for v in st["model"].values())
    m = T.read_metrics(run_dir)
    assert m["step"].max() == step and np.isfinite(m["eval_loss"]).all()


# ----------------------------------------------------------------------------- 1. resume after kill -9

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
import sasutils.train as T
from sasutils.corpus import load_corpus

cfg, run_dir, corpus, pause = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
data = load_corpus(**corpus, progress=False)
batch_indices = T.batch_indices

def slow_batch_indices(*a, **k):  # a pause per step so that the kill lands mid-run; the numbers are unchanged
    time.sleep(pause)
    return batch_indices(*a, **k)

T.batch_indices = slow_batch_indices
T.train(cfg, run_dir, data=data, progress=False)
"""


def run_and_kill(cfg: dict, run_dir: Path, corpus, delay: float) -> None:
    """Train ``cfg`` in a child process; SIGKILL it ``delay`` s after its first checkpoint past step 0 appears."""
    env = {**os.environ, "SASUTILS_CACHE": corpus.cache_root, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = run_dir.parent / f"{run_dir.name}.stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(cfg), str(run_dir), json.dumps(CORPUS), "0.05"],
            env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        first = run_dir / "checkpoints" / "step_0000010"
        deadline = time.time() + 120
        while not first.exists():
            assert proc.poll() is None, f"child exited early ({proc.returncode}):\n{log.read_text()[-3000:]}"
            assert time.time() < deadline, "child made no checkpoint in 120 s"
            time.sleep(0.01)
        time.sleep(delay)
        assert proc.poll() is None, "the child finished before the kill (no resume to test)"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("variant, kw", [
    ("base-dropout", dict(dropout=0.1)),  # dropout on: its RNG must be restored too
    ("sas-k20", dict(lam=0.05, suppress_steps=20)),  # regularizer on before k=20, off after
])
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, corpus, reference, variant, kw):
    cfg = tiny_cfg(**kw)
    ref = reference(cfg)
    seed = random.randrange(2**31)
    delay = random.Random(seed).uniform(0.0, 1.4)  # 0 to ~18 steps after checkpoint 10 (>= 30 x 0.05 s left)
    run_dir = tmp_path / "run"
    run_and_kill(cfg, run_dir, corpus, delay)
    killed_at = load_state(run_dir)["step"]
    note = f"kill {delay:.2f} s after checkpoint 10 (seed {seed}); state.pt at step {killed_at}"
    print(note)
    assert killed_at < cfg["steps"], note
    if variant == "sas-k20":  # a torn append to the metrics log (crash mid-write): dropped on resume
        with open(run_dir / "metrics.jsonl", "a") as fh:
            fh.write('{"step": 99, "train_lo')
    T.train(cfg, run_dir, data=corpus, progress=False)
    assert_same_run(run_dir, ref)
    assert T.read_metrics(ref)["lam"].tolist() == ([0.05, 0.05, 0.0, 0.0, 0.0] if kw.get("lam") else [0.0] * 5)


def test_resume_with_other_config_is_refused(tmp_path, corpus, reference):
    run_dir = tmp_path / "run"
    shutil.copytree(reference(tiny_cfg()), run_dir)
    with pytest.raises(T.TrainingError, match=r"different configuration \(differs in \['lr'\]\)"):
        T.train(tiny_cfg(lr=1e-3), run_dir, data=corpus, progress=False)


def test_resume_with_another_tokenizer_is_refused(tmp_path, corpus, reference):
    """A run whose saved tokenizer numbers the pieces differently (e.g. a rebuilt cache) is not resumed."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference(tiny_cfg()), run_dir)
    tok_json = run_dir / "tokenizer" / "tokenizer.json"
    d = json.loads(tok_json.read_text())
    vocab = d["model"]["vocab"]
    a, b = [t for t in vocab if not t.startswith("[")][:2]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    tok_json.write_text(json.dumps(d))
    with pytest.raises(T.TrainingError, match=r"differs from the corpus tokenizer \(2 of 1000 pieces have other ids"):
        T.train(tiny_cfg(), run_dir, data=corpus, progress=False)


@pytest.mark.parametrize("k", [10, 20])  # a checkpoint step with state.pt, and a pause between evaluations
def test_fork_at_k_equals_training_from_step_0(tmp_path, corpus, reference, k):
    """SAS-(k) forked from SAS- paused at k is the SAS-(k) run trained from step 0, bit for bit."""
    trunk, child = tiny_cfg(lam=0.05, suppress_steps=-1), tiny_cfg(lam=0.05, suppress_steps=k)
    T.train(trunk, tmp_path / "trunk", data=corpus, progress=False, stop_at=k)
    assert T.state_step(tmp_path / "trunk") == k and T.read_metrics(tmp_path / "trunk").step.max() < k
    T.fork(tmp_path / "trunk", tmp_path / "child", child)
    T.train(child, tmp_path / "child", data=corpus, progress=False)
    assert_same_run(tmp_path / "child", reference(child))
    T.train(trunk, tmp_path / "trunk", data=corpus, progress=False)  # the paused trunk goes on as if never paused
    assert_same_run(tmp_path / "trunk", reference(trunk))


def test_fork_refuses_runs_that_differ_before_k(tmp_path, corpus):
    T.train(tiny_cfg(lam=0.05, suppress_steps=-1), tmp_path / "trunk", data=corpus, progress=False, stop_at=20)
    with pytest.raises(T.TrainingError, match=r"differ in \['lr'\]"):
        T.fork(tmp_path / "trunk", tmp_path / "a", tiny_cfg(lam=0.05, suppress_steps=20, lr=1e-3))
    with pytest.raises(T.TrainingError, match="regularizer weights differ at step 10"):
        T.fork(tmp_path / "trunk", tmp_path / "b", tiny_cfg(lam=0.05, suppress_steps=10))
    with pytest.raises(T.TrainingError, match=r"differ in \['lam'\]"):
        T.fork(tmp_path / "trunk", tmp_path / "c", tiny_cfg())
    assert not any(p.name.startswith((".a", ".b", ".c", "a", "b", "c")) for p in tmp_path.iterdir())
    T.fork(tmp_path / "trunk", tmp_path / "d", tiny_cfg(lam=0.05, suppress_steps=30))
    with pytest.raises(T.TrainingError, match="already holds a run"):
        T.fork(tmp_path / "trunk", tmp_path / "d", tiny_cfg(lam=0.05, suppress_steps=30))


# ----------------------------------------------------------------------------- 2. atomic checkpoints

@pytest.fixture
def net(corpus):
    return model_lib.build_model(tiny_cfg(), len(corpus.tokenizer), corpus.tokenizer.pad_token_id, seed=0)


def _crash_in_model_save(net, tok, monkeypatch):
    def partial(d, **kw):  # half a weights file, then the crash
        Path(d).mkdir(parents=True, exist_ok=True)
        Path(d, "model.safetensors").write_bytes(b"\0" * 100)
        raise OSError("simulated crash in model.save_pretrained")
    monkeypatch.setattr(net, "save_pretrained", partial)


def _crash_in_tokenizer_save(net, tok, monkeypatch):
    def crash(*a, **kw):
        raise OSError("simulated crash in tokenizer.save_pretrained")
    monkeypatch.setattr(tok, "save_pretrained", crash)


def _crash_in_manifest(net, tok, monkeypatch):
    def partial(path, obj):  # half a manifest, then the crash
        path.write_text(json.dumps(obj)[:15])
        raise OSError("simulated crash writing the manifest")
    monkeypatch.setattr(T, "_atomic_json", partial)


@pytest.mark.parametrize("crash", [_crash_in_model_save, _crash_in_tokenizer_save, _crash_in_manifest])
def test_crash_during_checkpoint_write(tmp_path, monkeypatch, corpus, net, crash):
    tok = corpus.tokenizer
    T.save_checkpoint(net, tok, tmp_path, 10)
    with monkeypatch.context() as m:
        crash(net, tok, m)
        with pytest.raises(OSError, match="simulated crash"):
            T.save_checkpoint(net, tok, tmp_path, 20)
    half = tmp_path / "checkpoints" / ".step_0000020.tmp"
    assert half.is_dir()  # the half-written folder is left under its temporary name ...
    (tmp_path / "checkpoints" / "step_0000030").mkdir()  # ... and a stray folder without a manifest
    assert T.list_checkpoints(tmp_path) == [(10, tmp_path / "checkpoints" / "step_0000010")]  # both ignored
    T.verify_checkpoint(tmp_path / "checkpoints" / "step_0000010")
    with pytest.raises(T.CheckpointError, match="manifest.json"):
        T.verify_checkpoint(half)
    T.save_checkpoint(net, tok, tmp_path, 20)  # the retry replaces the half-written folder
    assert not half.exists() and [s for s, _ in T.list_checkpoints(tmp_path)] == [10, 20]
    T.load_checkpoint(tmp_path / "checkpoints" / "step_0000020")


def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@pytest.mark.parametrize("damage, name, message", [
    (lambda d: _truncate(d / "model.safetensors"), "model.safetensors", "missing or wrong size"),
    (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json", "missing or wrong size"),
    (lambda d: (d / "config.json").write_text("{}"), "config.json", "missing or wrong size"),
    (lambda d: (d / "manifest.json").write_text('{"step": 10, "fil'), "manifest.json", "unreadable"),
    (lambda d: (d / "manifest.json").unlink(), "manifest.json", "incomplete: no manifest.json"),
])
def test_damaged_checkpoint_is_named(tmp_path, corpus, net, damage, name, message):
    ck = T.save_checkpoint(net, corpus.tokenizer, tmp_path, 10)
    damage(ck)
    for check in (T.verify_checkpoint, T.load_checkpoint):  # load verifies first: no deep safetensors error
        with pytest.raises(T.CheckpointError, match=message) as e:
            check(ck)
        assert str(ck) in str(e.value) and name in str(e.value)


def test_crash_while_checkpointing_in_training_then_resume(tmp_path, monkeypatch, corpus, reference):
    cfg = tiny_cfg()
    real = T._atomic_json

    def crash_at_20(path, obj):
        if path.parent.name == ".step_0000020.tmp":
            raise OSError("simulated crash while writing checkpoint 20")
        real(path, obj)

    monkeypatch.setattr(T, "_atomic_json", crash_at_20)
    with pytest.raises(OSError, match="checkpoint 20"):
        T.train(cfg, tmp_path, data=corpus, progress=False)
    assert (tmp_path / "checkpoints" / ".step_0000020.tmp").is_dir()
    assert [s for s, _ in T.list_checkpoints(tmp_path)] == [0, 10] and load_state(tmp_path)["step"] == 10
    monkeypatch.setattr(T, "_atomic_json", real)
    T.train(cfg, tmp_path, data=corpus, progress=False)
    assert_same_run(tmp_path, reference(cfg))


@pytest.mark.parametrize("corrupt", [
    lambda p: _truncate(p),  # a torn write (state.pt is replaced atomically, but disks and copies fail)
    lambda p: p.write_bytes(b"not a torch file"),
    lambda p: torch.save({"step": 20}, p),  # readable but incomplete
])
def test_corrupt_state_pt_is_a_clear_error(tmp_path, corpus, reference, corrupt):
    """Documented behaviour: TrainingError naming state.pt; deleting it restarts the run from step 0 (there
    is no fallback to the last checkpoint, which holds no optimizer state, so it could not resume exactly)."""
    cfg = tiny_cfg()
    run_dir = tmp_path / "run"
    shutil.copytree(reference(cfg), run_dir)
    corrupt(run_dir / "state.pt")
    with pytest.raises(T.TrainingError, match=r"state\.pt is unreadable.*delete it") as e:
        T.train(cfg, run_dir, data=corpus, progress=False)
    assert str(run_dir / "state.pt") in str(e.value)


def test_deleting_state_pt_restarts_and_reproduces(tmp_path, corpus, reference):
    cfg = tiny_cfg()
    run_dir = tmp_path / "run"
    shutil.copytree(reference(cfg), run_dir)
    (run_dir / "state.pt").unlink()
    T.train(cfg, run_dir, data=corpus, progress=False)
    assert_same_run(run_dir, reference(cfg))


def test_metrics_log_torn_line(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 0, "eval_loss": 7.0}\n{"step": 10, "eval_lo')  # torn last line: dropped
    assert T.read_metrics(tmp_path)["step"].tolist() == [0]
    p.write_text('{"step": 0, "eval_loss": 7.0}\n{"step": 10, "eval_lo\n{"step": 20, "eval_loss": 6.0}\n')
    with pytest.raises(T.TrainingError, match=rf"{p}:2: not a JSON line"):  # anywhere else: named
        T.read_metrics(tmp_path)


# ----------------------------------------------------------------------------- 3. non-finite loss

def _poison(monkeypatch, what: str, at: int):
    """Make the training step ``at`` non-finite: the MLM loss, the regularizer, or only the gradient."""
    cur = {}
    bi, mlm, reg = T.batch_indices, model_lib.masked_lm_loss, T.syntactic_regularizer

    def batch_indices(n, batch_size, seed, step):
        cur["step"] = step
        return bi(n, batch_size, seed, step)

    def masked_lm_loss(model, *a, **k):
        loss, att = mlm(model, *a, **k)
        if model.training and cur.get("step") == at:
            if what == "loss":
                loss = loss * float("nan")
            elif what == "gradient":  # value unchanged, gradient NaN (d sqrt(x)/dx = inf at 0, times 0)
                loss = loss + torch.sqrt(0.0 * next(model.parameters()).sum())
        return loss, att

    def syntactic_regularizer(att, parents, reduction, **words):
        r = reg(att, parents, reduction, **words)
        return r * float("inf") if what == "regularizer" and torch.is_grad_enabled() and cur.get("step") == at else r

    monkeypatch.setattr(T, "batch_indices", batch_indices)
    monkeypatch.setattr(model_lib, "masked_lm_loss", masked_lm_loss)
    monkeypatch.setattr(T, "syntactic_regularizer", syntactic_regularizer)


@pytest.mark.parametrize("what, at, cfg_kw, message", [
    ("loss", 25, {}, "non-finite loss at step 25"),
    ("regularizer", 15, dict(lam=0.05, suppress_steps=20), "non-finite loss at step 15"),
    # a finite loss with a NaN gradient, one step before a checkpoint: caught before the update, so that
    # checkpoint 30 and state.pt are not written from NaN weights
    ("gradient", 29, {}, "non-finite gradient at step 29"),
])
def test_non_finite_stops_with_step_and_keeps_last_good(tmp_path, monkeypatch, corpus, reference,
                                                        what, at, cfg_kw, message):
    cfg = tiny_cfg(**cfg_kw)
    with monkeypatch.context() as m:
        _poison(m, what, at)
        with pytest.raises(T.TrainingError, match=message) as e:
            T.train(cfg, tmp_path, data=corpus, progress=False)
    assert str(tmp_path) in str(e.value)
    assert_last_good(tmp_path, at // 10 * 10)
    if what == "loss":  # the fault was transient: resuming from the last good state reproduces the clean run
        T.train(cfg, tmp_path, data=corpus, progress=False)
        assert_same_run(tmp_path, reference(cfg))


# ----------------------------------------------------------------------------- 4. malformed inputs

def _read(path: Path):
    if path.suffix == ".conllu":
        return read_conllu(path)
    if path.suffix == ".dp":
        return read_malt_tab(path.read_text(encoding="utf-8").splitlines(), str(path))
    return read_blimp_jsonl(path)


# tree errors (head range, roots, cycle) name the sentence's first line; line errors name the line itself
MALFORMED = [
    ("conllu/head_out_of_range.conllu", TreebankError, 8, "word 3 has head 7, outside 0..3"),
    ("conllu/cycle.conllu", TreebankError, 8, "heads form a cycle through word 2"),
    ("conllu/two_roots.conllu", TreebankError, 8, "sentence has 2 roots"),
    ("conllu/missing_columns.conllu", TreebankError, 10, "expected 10 tab-separated columns, found 7"),
    ("conllu/non_integer_head.conllu", TreebankError, 10, "HEAD 'x'"),
    ("conllu/id_out_of_sequence.conllu", TreebankError, 10, "word ID 3 out of sequence"),
    ("conllu/non_utf8.conllu", TreebankError, 10, "not UTF-8"),
    ("malt/missing_column.dp", TreebankError, 7, "expected word<TAB>POS<TAB>head, found 2 columns"),
    ("blimp/missing_field.jsonl", BlimpError, 2, "missing field(s) sentence_bad"),
    ("blimp/empty_sentence.jsonl", BlimpError, 2, "empty or non-string sentence_good"),
    ("blimp/bad_json.jsonl", BlimpError, 2, "bad JSON"),
    ("blimp/not_object.jsonl", BlimpError, 2, "expected a JSON object"),
    ("blimp/non_utf8.jsonl", BlimpError, 2, "not UTF-8"),
]


@pytest.mark.parametrize("name, error, line, message", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_file_names_file_and_line(name, error, line, message):
    path = BROKEN / name
    with pytest.raises(error) as e:
        _read(path)
    assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value), str(e.value)


def test_non_utf8_inside_wsj_zip_names_member_and_line(tmp_path):
    z = tmp_path / "dependency_treebank.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("wsj_0001.dp", (BROKEN / "malt" / "non_utf8.dp").read_bytes())
    with pytest.raises(TreebankError, match="not UTF-8") as e:
        read_wsj_zip(z)
    assert str(e.value).startswith(f"{z}!wsj_0001.dp:6: ")


def test_multiword_ranges_and_empty_nodes_are_counted_not_errors():
    stats = ReadStats()
    sents = read_conllu(BROKEN / "conllu" / "multiword_empty.conllu", stats)
    assert [s.sent_id for s in sents] == ["good-1", "mw"]
    assert sents[1].words == ("Do", "n't", "go") and sents[1].heads == (2, 2, -1)
    assert (stats.sentences, stats.words, stats.multiword_ranges, stats.empty_nodes) == (2, 7, 1, 1)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """parse_corpus caches by (source, n) only: a tmp cache keeps these inputs out of the real one."""
    monkeypatch.setenv("SASUTILS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_empty_corpus_names_folder(tmp_cache):
    root = BROKEN / "corpus_empty"
    with pytest.raises(CorpusError, match="no wiki_\\* files under") as e:
        corpus_lib.load_corpus(**CORPUS, data_dir=root, progress=False)
    assert str(root.resolve() / "wikipedia_en_2015_sample") in str(e.value)
    assert not list((tmp_cache / "parses").glob("*.parquet"))  # nothing cached


def test_non_utf8_corpus_file_names_file_and_line(tmp_cache):
    f = (BROKEN / "corpus_non_utf8" / "wikipedia_en_2015_sample" / "AA" / "wiki_00").resolve()
    with pytest.raises(CorpusError, match="not UTF-8") as e:  # raised inside spaCy's pipe, surfaces as is
        corpus_lib.load_corpus(**CORPUS, data_dir=f.parents[2], progress=False)
    assert str(e.value).startswith(f"{f}:5: ")


def test_too_small_corpus_is_a_clear_error(tmp_cache):
    with pytest.raises(CorpusError, match=r"corpus has \d+ sentences, not more than eval_sentences=300"):
        corpus_lib.load_corpus(**CORPUS, data_dir=BROKEN / "corpus_tiny", progress=False)


# ----------------------------------------------------------------------------- 5. parameters

BAD_PARAMS = [
    (dict(preset="gpu-huge"), "unknown preset 'gpu-huge'"),
    (dict(stpes=10), "unknown parameter(s) ['stpes']"),
    (dict(suppress_steps=41), "parameter suppress_steps=41"),
    (dict(suppress_steps=-2), "parameter suppress_steps=-2"),
    (dict(lr=-1e-3), "parameter lr=-0.001"),
    (dict(warmup=40), "parameter warmup=40"),
    (dict(batch_size=0), "parameter batch_size=0"),
    (dict(steps="10"), "parameter steps='10'"),
    (dict(lr="1e-3"), "parameter lr='1e-3'"),
    (dict(mask_prob="0.15"), "parameter mask_prob='0.15'"),
    (dict(hidden_size="32"), "parameter hidden_size='32'"),
    (dict(seed=1.5), "parameter seed=1.5"),
    (dict(seed=-1), "parameter seed=-1"),
    (dict(hidden_size=0), "parameter hidden_size=0"),
    (dict(seq_len=0), "parameter seq_len=0"),
    (dict(corpus_sentences=0), "parameter corpus_sentences=0"),
    (dict(suppress_steps=2.0), "parameter suppress_steps=2.0"),
    (dict(batch_size=True), "parameter batch_size=True"),
    (dict(lam=float("nan")), "parameter lam=nan"),
    (dict(corpus="wikipedia+arxiv"), "parameter corpus="),
    (dict(checkpoint_log_steps=("10",)), "parameter checkpoint_log_steps="),
    (dict(eval_batches=0), "parameter eval_batches=0"),
    (dict(data_dir="/nonexistent/sasutils-data"), "parameter data_dir='/nonexistent/sasutils-data'"),
]


@pytest.fixture
def no_compute(monkeypatch):
    """Anything that would parse, load data or build a model fails the test."""
    def forbidden(*a, **k):
        raise AssertionError("compute started before the parameters were checked")
    for mod, name in [(corpus_lib, "parse_corpus"), (corpus_lib, "load_corpus"), (T, "load_corpus"),
                      (model_lib, "build_model"), (corpus_lib, "_nlp")]:
        monkeypatch.setattr(mod, name, forbidden)


@pytest.mark.parametrize("kw, message", BAD_PARAMS, ids=[f"{k}={v!r}" for kw, _ in BAD_PARAMS for k, v in kw.items()])
def test_bad_parameter_is_named_before_compute(tmp_path, no_compute, kw, message):
    kw = dict(kw)
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as e:
        T.make_config(kw.pop("preset", "cpu-tiny"), **{**TINY, **kw})
    assert message in str(e.value)
    if message.startswith("parameter"):
        # a config dict edited by hand: train() refuses it before touching the run dir or the data
        cfg = {**T.make_config("cpu-tiny", **TINY), **kw}
        with pytest.raises(ValueError, match=message.split("=")[0]):
            T.train(cfg, tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()
    assert time.perf_counter() - t0 < 5


def test_edge_values_are_accepted(no_compute):
    for kw in (dict(suppress_steps=-1), dict(suppress_steps=0), dict(suppress_steps=40), dict(warmup=0),
               dict(lam=-0.1), dict(seed=np.int64(3))):
        T.make_config("cpu-tiny", **{**TINY, **kw})


# ----------------------------------------------------------------------------- 6. determinism

def test_same_seed_same_curve_other_seed_differs(tmp_path, corpus, reference):
    cfg = tiny_cfg(dropout=0.1)
    T.train(cfg, tmp_path / "again", data=corpus, progress=False)
    assert_same_run(reference(cfg), tmp_path / "again")
    other = T.train({**cfg, "seed": 1}, tmp_path / "seed1", data=corpus, progress=False)
    ref = T.read_metrics(reference(cfg))
    assert (other["eval_loss"] != ref["eval_loss"]).all()
    assert not np.allclose(other["train_loss"][1:], ref["train_loss"][1:], rtol=0, atol=1e-4)


def test_lam_at_switches_off_exactly_at_k():
    for lam in (0.05, -0.05):  # SAS- and SAS+
        cfg = tiny_cfg(lam=lam, suppress_steps=20)
        assert T.lam_at(cfg, 19) == lam and T.lam_at(cfg, 20) == 0.0
        assert [T.lam_at(cfg, s) for s in range(41)] == [lam] * 20 + [0.0] * 21
        assert all(T.lam_at({**cfg, "suppress_steps": -1}, s) == lam for s in range(41))  # whole run
        assert all(T.lam_at({**cfg, "suppress_steps": 0}, s) == 0.0 for s in range(41))  # never (Base)


def test_lr_at_does_not_depend_on_suppress_steps():
    curves = {k: [T.lr_at(tiny_cfg(lam=0.05, suppress_steps=k), s) for s in range(41)] for k in (-1, 0, 1, 20, 40)}
    first = curves[-1]
    assert all(c == first for c in curves.values())
    cfg = tiny_cfg()
    assert first[cfg["warmup"] - 1] == pytest.approx(cfg["lr"]) and first[-1] == 0.0
    assert all(a >= b for a, b in zip(first[cfg["warmup"] - 1:], first[cfg["warmup"]:]))
