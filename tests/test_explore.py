"""sasutils.explore: arcs recomputed from a run's checkpoints on demand, cached; clear errors."""

from __future__ import annotations

import pytest

import sasutils.train as T
from sasutils import explore

TINY = dict(steps=10, warmup=2, eval_every=5, checkpoint_every=5, checkpoint_log_steps=(), hidden_size=32,
            intermediate_size=64, num_attention_heads=2, corpus_sentences=3000, vocab_size=1000, seq_len=32)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("explore") / "run"
    T.train(T.make_config("cpu-tiny", **TINY), d, progress=False)
    return d


def test_arcs_per_checkpoint_and_page(run_dir):
    src = explore.ArcSource(run_dir, per_page=3)
    assert src.steps == [0, 5, 10]
    a = src.arcs(10, 0)
    assert a.sentence.nunique() == 3 and set(a.step) == {10}
    assert a is src.arcs(10, 0)  # cached
    assert not a.equals(src.arcs(0, 0))  # another checkpoint, other weights
    with pytest.raises(ValueError, match="no checkpoint at step 7"):
        src.arcs(7)
    with pytest.raises(ValueError, match="page must be"):
        src.arcs(10, src.pages)


def test_widget_builds(run_dir):
    pytest.importorskip("ipywidgets")
    box = explore.attention_explorer(run_dir, per_page=2)
    assert box.children[0].children[0].value == 10


def test_empty_run_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        explore.ArcSource(tmp_path)
