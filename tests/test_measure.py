"""measure: per-checkpoint tables of a run, cached in the run folder."""

import numpy as np
import pytest

from sasutils import measure, train as T


@pytest.fixture(scope="module")
def run_dir(small_tokenizer, tmp_path_factory):
    from sasutils.corpus import CorpusData, Packed

    g = np.random.default_rng(0)
    ids = g.integers(10, len(small_tokenizer), (32, 16)).astype(np.int32)
    ids[:, 0], ids[:, -1] = small_tokenizer.cls_token_id, small_tokenizer.sep_token_id
    par = np.full((32, 16), -1, dtype=np.int16)
    data = CorpusData(small_tokenizer, Packed(ids, par), Packed(ids[:16], par[:16]), 80, [])
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
