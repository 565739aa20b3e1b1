"""sas.attention_arcs (per-word argmax arcs of every head) and plots.attention_arc_chart (Figure 1)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sasutils import plots, sas


@pytest.fixture(scope="module")
def short_sentences(ewt_dev):
    """Real EWT dev sentences of 5..14 words with distinct words (so token ids identify a sentence)."""
    seen, out = set(), []
    for s in ewt_dev:
        if 5 <= len(s) <= 14 and s.words not in seen:
            seen.add(s.words)
            out.append(s)
    return out[:12]


@pytest.fixture(scope="module")
def encoded(short_sentences, small_tokenizer):
    enc = sas.encode_treebank(short_sentences, small_tokenizer, max_len=64)
    assert len(enc) == len(short_sentences)  # nothing skipped: enc index = list index
    return enc


class AttentionTable(torch.nn.Module):
    """A stand-in model whose attention is given: ``fn(p2w, heads) -> (T, T)`` per sentence (L = H = 1).

    ``chunk_attentions`` only needs ``parameters()``, ``config._attn_implementation`` and ``bert(...)``.
    """

    def __init__(self, enc, fn):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(_attn_implementation="eager")
        self.table = {tuple(ids.tolist()): torch.from_numpy(fn(p2w, h)) for ids, p2w, h in zip(enc.ids, enc.p2w, enc.heads)}
        assert len(self.table) == len(enc)

    def bert(self, input_ids, attention_mask, output_attentions):
        B, T = input_ids.shape
        attn = torch.zeros(B, 1, T, T)
        for b in range(B):
            n = int(attention_mask[b].sum())
            attn[b, 0, :n, :n] = self.table[tuple(input_ids[b, :n].tolist())]
        return SimpleNamespace(attentions=(attn,))


def gold_attention(p2w, heads):
    """Every piece of a word attends mostly to its parent's first piece (roots: uniform)."""
    T = len(p2w)
    a = np.full((T, T), 1e-3, dtype=np.float32)
    for t, w in enumerate(p2w):
        if w >= 0 and heads[w] >= 0:
            a[t, np.nonzero(p2w == heads[w])[0][0]] = 1.0
    return a / a.sum(-1, keepdims=True)


def test_gold_arc_attention_gives_gold_arcs(encoded, short_sentences):
    idx = [4, 0, 7]
    df = sas.attention_arcs(AttentionTable(encoded, gold_attention), encoded, idx, [short_sentences[k] for k in idx])
    assert list(df.columns) == list(sas.ARC_COLUMNS)
    assert list(dict.fromkeys(df.sentence)) == idx  # the caller's order
    assert len(df) == 2 * sum(len(short_sentences[k]) for k in idx)  # L = H = 1, two directions
    dep = df[df.direction == "dep"]
    nonroot = dep[dep.gold >= 0]
    assert nonroot.is_gold.all() and (nonroot.j == nonroot.gold).all()
    assert (nonroot.weight > 0.5).all() and np.allclose(nonroot.weight, nonroot.gold_weight)
    root = df[df.gold < 0]
    assert len(root) == 2 * len(idx) and not root.is_gold.any() and root.gold_weight.isna().all()
    for k in idx:  # labels and gold parents come from the right sentence
        rows = dep[dep.sentence == k].sort_values("i")
        assert tuple(rows.word) == short_sentences[k].words
        assert tuple(rows.gold) == short_sentences[k].heads
        assert tuple(rows.relation) == short_sentences[k].deprels


def test_random_model_arcs_agree_with_the_uas_scorer(encoded, short_sentences, tiny_model):
    idx = [3, 1, 10, 5]
    impl = tiny_model.config._attn_implementation
    df = sas.attention_arcs(tiny_model, encoded, idx, [short_sentences[k].words for k in idx])
    assert not tiny_model.training and tiny_model.config._attn_implementation == impl  # restored
    L, H = tiny_model.config.num_hidden_layers, tiny_model.config.num_attention_heads
    n_words = sum(len(short_sentences[k]) for k in idx)
    assert len(df) == L * H * 2 * n_words
    per_head = df.groupby(["sentence", "layer", "head", "direction"]).size()
    assert (per_head == [len(short_sentences[k]) for k in per_head.index.get_level_values("sentence")]).all()
    assert ((df.weight > 0) & (df.weight <= 1)).all() and (df.j != df.i).all() and (df.j >= 0).all()
    # argmax really is the maximum: no gold arc gets more attention than the predicted one
    nonroot = df[df.gold >= 0]
    assert (nonroot.gold_weight <= nonroot.weight + 1e-6).all()
    # per head, the share of correct arcs is the UAS that the scorer reports on the same sentences
    uas = sas.score_uas(tiny_model, sas.select(encoded, idx), baselines=False)
    uas = uas[uas.relation == "all"].set_index(["layer", "head", "direction"]).uas
    share = nonroot.groupby(["layer", "head", "direction"]).is_gold.mean()
    assert np.allclose(share.sort_index().to_numpy(), uas.sort_index().to_numpy())


def test_misaligned_or_bad_indices_are_errors(encoded, short_sentences, tiny_model):
    with pytest.raises(ValueError, match="aligned"):
        sas.attention_arcs(tiny_model, encoded, [0, 1], [short_sentences[1], short_sentences[0]])
    with pytest.raises(ValueError, match="word lists"):
        sas.attention_arcs(tiny_model, encoded, [0, 1], [short_sentences[0]])
    with pytest.raises(IndexError):
        sas.attention_arcs(tiny_model, encoded, [len(encoded)], [short_sentences[0]])


def test_chart_spec_builds(encoded, short_sentences, tiny_model):
    idx = [2, 6, 9]
    df = sas.attention_arcs(tiny_model, encoded, idx, [short_sentences[k] for k in idx])
    spec = plots.attention_arc_chart(df).to_dict()
    params = {p["name"]: p for p in spec["params"]}
    assert set(params) == {"sentence", "layer", "head", "direction"}
    assert params["sentence"]["bind"]["input"] == "select" and params["sentence"]["bind"]["options"] == idx
    assert params["layer"]["bind"]["input"] == "range"
    assert params["layer"]["bind"]["max"] == tiny_model.config.num_hidden_layers - 1
    assert params["head"]["bind"]["options"] == list(range(tiny_model.config.num_attention_heads))
    # it opens on the head with the most correct arcs
    best = df[df.gold >= 0].groupby(["layer", "head", "direction"]).is_gold.mean().idxmax()
    assert (params["layer"]["value"], params["head"]["value"], params["direction"]["value"]) == best
    # data stay small: one row per predicted arc (curves are made in the page), the words once
    sizes = sorted(len(v) for v in spec["datasets"].values())
    assert sizes[-1] == len(df) and sum(sizes) < 2 * len(df)
    with pytest.raises(ValueError, match="lacks columns"):
        plots.attention_arc_chart(df.drop(columns="weight"))
