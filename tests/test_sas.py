"""The vectorised SAS scorer against a plain per-sentence, per-head reference loop."""

import numpy as np
import pandas as pd
import pytest
import torch

from sasutils import sas
from sasutils.model import attention_weights
from sasutils.treebank import ParsedSentence


def reference_counts(attn_per_sentence, enc, to="sum"):
    """Plain loops: for each sentence, layer, head and direction, argmax over the other words. Attention to a
    word: the sum over its pieces (``to="sum"``) or their mean."""
    reduce_to = sum if to == "sum" else (lambda xs: np.mean(list(xs)))
    L, H = attn_per_sentence[0].shape[:2]
    correct = np.zeros((L, H, 2, len(enc.relations) + 2))
    n = np.zeros(len(enc.relations) + 2)
    soft = np.zeros((L, H, 2, len(enc.relations) + 2))
    for a, p2w, heads, rels in zip(attn_per_sentence, enc.p2w, enc.heads, enc.rels):
        W = len(heads)
        for i in range(W):
            if heads[i] >= 0:
                n[0] += 1
                n[2 + rels[i]] += 1
            n[1] += 1
        for l in range(L):
            for h in range(H):
                aw = np.zeros((W, W))
                for wi in range(W):
                    rows = [t for t in range(len(p2w)) if p2w[t] == wi]
                    for wj in range(W):
                        cols = [t for t in range(len(p2w)) if p2w[t] == wj]
                        aw[wi, wj] = np.mean([reduce_to(a[l, h, t, u] for u in cols) for t in rows])
                for d, m in enumerate((aw, aw.T)):
                    for i in range(W):
                        if heads[i] < 0:
                            continue
                        cand = [j for j in range(W) if j != i]
                        best = max(cand, key=lambda j: (m[i, j], -j))  # first max, like argmax
                        hit = float(best == heads[i] and m[i, best] > 0)
                        for k in (0, 1, 2 + rels[i]):
                            correct[l, h, d, k] += hit
                            soft[l, h, d, k] += m[i, heads[i]]
    return correct, n, soft


@pytest.fixture(scope="module")
def encoded(ewt_dev, small_tokenizer):
    return sas.first_n(sas.encode_treebank(ewt_dev[:80], small_tokenizer, max_len=64), 40)


@pytest.mark.parametrize("to", sas.TO_WORD)
def test_vectorised_equals_reference_on_real_ewt(encoded, tiny_model, to):
    model = tiny_model
    totals = None
    per_sentence = [None] * len(encoded)
    with torch.no_grad(), attention_weights(model):
        for batch in sas.batches(encoded, max_tokens=300):
            out = model.bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_attentions=True)
            attn = torch.stack(out.attentions).double()  # (L, B, H, T, T)
            c = sas.score_attention(attn, batch, len(encoded.relations), to)
            totals = c if totals is None else totals.__iadd__(c)
            for b, s in enumerate(batch.index):
                T = len(encoded.ids[s])
                per_sentence[s] = attn[:, b, :, :T, :T].numpy()
    ref_c, ref_n, ref_soft = reference_counts(per_sentence, encoded, to)
    assert np.array_equal(totals.correct.numpy(), ref_c)
    assert np.array_equal(totals.n[0, 0, 0].numpy(), ref_n)
    assert np.allclose(totals.soft.numpy(), ref_soft, atol=1e-9)
    assert ref_c[..., 0].max() > 0  # something was right, so the equality is not trivially 0 == 0


def _known_attention(enc, fn, to="sum"):
    """Attention tensors (L=1, B, H=1, T, T) built by ``fn(p2w, heads) -> (T, T)``, scored."""
    total = None
    for batch in sas.batches(enc, max_tokens=10_000):
        B, T = batch.input_ids.shape
        attn = torch.zeros(1, B, 1, T, T)
        for b, s in enumerate(batch.index):
            n = len(enc.ids[s])
            attn[0, b, 0, :n, :n] = torch.from_numpy(fn(enc.p2w[s], enc.heads[s]))
        c = sas.score_attention(attn, batch, len(enc.relations), to)
        total = c if total is None else total.__iadd__(c)
    return sas.counts_table(total, enc.relations)


def _gold(p2w, heads):
    """Every piece of a word attends mostly to its parent's first piece (roots: uniform)."""
    T = len(p2w)
    a = np.full((T, T), 1e-3, dtype=np.float32)
    for t, w in enumerate(p2w):
        if w >= 0 and heads[w] >= 0:
            a[t, np.nonzero(p2w == heads[w])[0][0]] = 1.0  # attend to the parent's first piece
    return a / a.sum(-1, keepdims=True)


def test_gold_arc_attention_gives_uas_one(encoded):
    df = _known_attention(encoded, _gold)
    row = df[(df.direction == "dep") & (df.relation == "all")].iloc[0]
    assert row.uas == 1.0
    root = df[(df.direction == "dep") & (df.relation == "all+root")].iloc[0]
    assert root.uas < 1.0  # root words count and are never right


def test_next_word_attention_equals_offset_plus_one(encoded):
    def next_word(p2w, heads):
        T = len(p2w)
        a = np.zeros((T, T), dtype=np.float32)
        a[:, -1] = 1.0  # [SEP]: where the last word (and the specials) put their attention
        for t, w in enumerate(p2w):
            if w >= 0 and w + 1 < len(heads):
                a[t] = 0.0
                a[t, np.nonzero(p2w == w + 1)[0][0]] = 1.0
        return a

    df = _known_attention(encoded, next_word)
    base = sas.offset_baselines(encoded)
    got = df[(df.direction == "dep") & (df.relation == "all")].correct.iloc[0]
    assert got == base[(base.direction == "offset+1") & (base.relation == "all")].correct.iloc[0]
    for rel in ["all", "all+root", "nsubj", "det"]:
        got = df[(df.direction == "dep") & (df.relation == rel)].uas.iloc[0]
        want = base[(base.direction == "offset+1") & (base.relation == rel)].uas.iloc[0]
        # the last word attends only to [SEP]: no prediction, as offset +1 has none
        assert got == pytest.approx(want, rel=1e-6), rel  # counts are equal; uas is a float32 ratio


def test_score_uas_and_summary(encoded, tiny_model):
    df = sas.score_uas(tiny_model, encoded)
    assert {"layer", "head", "direction", "relation", "n", "correct", "uas", "soft"} <= set(df.columns)
    L, H = tiny_model.config.num_hidden_layers, tiny_model.config.num_attention_heads
    assert len(df[(df.layer >= 0) & (df.relation == "all")]) == L * H * 2
    s = sas.summarize(df)
    assert 0 <= s["sas_uas_root"] <= s["sas_uas"] <= 1 and s["offset_best"] > 0.2
    assert s["sas_uas"] == df[(df.layer >= 0) & (df.relation == "all")].uas.max()


def test_long_sentences_and_empty_words_are_counted(small_tokenizer):
    long = ParsedSentence(tuple(["word"] * 100), tuple([-1] + [0] * 99), tuple(["dep"] * 100))
    ctrl = ParsedSentence(("a", "\u200b", "b"), (-1, 0, 0), ("root", "dep", "dep"))
    enc = sas.encode_treebank([long, ctrl], small_tokenizer, max_len=32)
    assert enc.skipped_too_long == 1 and len(enc) == 1 and enc.unk_words == 1
    assert len(enc.notes) == 2
    assert (enc.p2w[0] >= 0).sum() == 3  # one piece per word, the empty one as [UNK]


def test_parent_offsets_agree_with_uas_and_a_plain_loop(encoded, tiny_model):
    """Summed over offsets, the profile's correct counts are the scorer's; each bin matches a plain loop."""
    prof = sas.parent_offsets(tiny_model, encoded, max_offset=2, max_tokens=300)
    uas = sas.counts_table(sas.count_uas(tiny_model, encoded, max_tokens=300), encoded.relations)
    allw = uas[uas.relation == "all"].set_index(["layer", "head", "direction"]).correct
    assert prof.groupby(["layer", "head", "direction"]).correct.sum().sort_index().equals(allw.sort_index())
    ref = np.zeros((2, 2, 7), dtype=int)  # layer 0, head 0 only: (direction, [n, correct], bin)
    for batch, attn in sas.chunk_attentions(tiny_model, encoded, max_tokens=300):
        aw = sas.word_attention(attn, batch.piece_word)[0, :, 0]  # (B, W, W)
        for b, s in enumerate(batch.index):
            heads = encoded.heads[s]
            m = aw[b, : len(heads), : len(heads)].numpy()
            for d, mat in enumerate((m, m.T)):
                for i in range(len(heads)):
                    if heads[i] < 0:
                        continue
                    cand = [j for j in range(len(heads)) if j != i]
                    p = max(cand, key=lambda j: (mat[i, j], -j))
                    if mat[i, p] <= 0:
                        continue
                    k = min(max(p - i, -3), 3) + 3
                    ref[d, 0, k] += 1
                    ref[d, 1, k] += int(p == heads[i])
    got = prof[(prof.layer == 0) & (prof["head"] == 0)]
    for d, name in enumerate(sas.DIRECTIONS):
        g = got[got.direction == name].sort_values("offset")
        assert g.n.tolist() == ref[d, 0].tolist() and g.correct.tolist() == ref[d, 1].tolist()


def test_a_previous_word_head_is_fully_positional(encoded):
    """Attention to the previous word (the first word: to the next): every prediction at offset -1 but the
    first words' (+1); share = that fraction; away from the mode only the first words can be right."""
    n = correct = None
    for batch in sas.batches(encoded, max_tokens=10_000):
        B, T = batch.input_ids.shape
        attn = torch.full((1, B, 1, T, T), 1e-4)
        for b, s in enumerate(batch.index):
            p2w = encoded.p2w[s]
            first = {w: t for t, w in reversed(list(enumerate(p2w))) if w >= 0}
            for t, w in enumerate(p2w):
                if w > 0 or (w == 0 and 1 in first):  # the first word has no left neighbour: it attends right
                    attn[0, b, 0, t, first[w - 1] if w > 0 else first[1]] = 1.0
        a, c = sas.offset_counts(attn, batch, max_offset=3)
        n, correct = (a, c) if n is None else (n + a, correct + c)
    prof = sas.offset_table(n, correct)
    dep = prof[prof.direction == "dep"].set_index("offset")
    later = sum(int((encoded.heads[s][1:] >= 0).sum()) for s in range(len(encoded)))
    first = sum(int(encoded.heads[s][0] >= 0) for s in range(len(encoded)))
    assert dep.n[-1] == later and dep.n[1] == first and dep.n.sum() == later + first
    share = sas.positional_share(prof).set_index("direction").loc["dep"]
    assert share.modal_offset == -1 and share.share == pytest.approx(later / (later + first))
    assert share.uas_off_mode == pytest.approx(dep.correct[1] / (later + first))  # only word 0's guesses


def test_offset_correct_known_answer():
    pos, length, gold = np.array([0, 1, 2]), np.array([3, 3, 3]), np.array([1, 2, 1])
    assert sas.offset_correct(pos, length, gold, 1).tolist() == [True, True, False]  # i = 2 has no i + 1
    assert sas.offset_correct(pos, length, gold, 1, mirror=True).tolist() == [True, True, True]  # 2 -> 1
    assert sas.offset_correct(pos, length, gold, -1).tolist() == [False, False, True]
    assert sas.offset_correct(pos, length, gold, -1, mirror=True).tolist() == [True, False, True]  # 0 -> 1
    one = sas.offset_correct(np.array([0]), np.array([1]), np.array([0]), 1, mirror=True)
    assert one.tolist() == [False]  # neither side exists


def test_next_word_head_with_edge_fallback_equals_the_edge_rule(encoded):
    """Attention to the next word, and from the last word to the one before it: the edge rule exactly."""
    def next_or_previous(p2w, heads):
        T, W = len(p2w), len(heads)
        a = np.full((T, T), 1e-4, dtype=np.float32)
        for t, w in enumerate(p2w):
            if w >= 0 and W > 1:
                a[t, np.nonzero(p2w == (w + 1 if w + 1 < W else w - 1))[0][0]] = 1.0
        return a

    df = _known_attention(encoded, next_or_previous)
    edge = sas.offset_baselines(encoded, mirror=True)
    plain = sas.offset_baselines(encoded)
    assert (edge.layer == -2).all() and edge.direction.str.startswith("edge").all()
    for rel in ["all", "all+root", "nsubj", "punct"]:
        got = df[(df.direction == "dep") & (df.relation == rel)].correct.iloc[0]
        assert got == edge[(edge.direction == "edge+1") & (edge.relation == rel)].correct.iloc[0], rel
    e = edge[(edge.direction == "edge+1") & (edge.relation == "all")].correct.iloc[0]
    p = plain[(plain.direction == "offset+1") & (plain.relation == "all")].correct.iloc[0]
    assert e > p  # some last words' parent is the word before them


def test_word_correctness_adds_up_to_the_counts(encoded, tiny_model):
    wc = sas.word_correctness(tiny_model, encoded, max_tokens=300)
    counts = sas.count_uas(tiny_model, encoded, max_tokens=300)
    assert np.array_equal(wc["heads"].sum(-1), counts.correct[..., 0].numpy().astype(int))
    n = len(wc["gold"])
    assert n == int(counts.n[0, 0, 0, 0])
    assert all(len(wc[k]) == n for k in ("position", "length", "relation", "sentence"))
    plain = sas.offset_baselines(encoded).set_index(["direction", "relation"]).correct
    for k in sas.OFFSETS:
        assert sas.offset_correct(wc["position"], wc["length"], wc["gold"], k).sum() == plain[(f"offset{k:+d}", "all")]
    edge = sas.offset_baselines(encoded, mirror=True).set_index(["direction", "relation"]).correct
    for k in sas.OFFSETS:  # the edge rule reads the lengths too
        got = sas.offset_correct(wc["position"], wc["length"], wc["gold"], k, mirror=True).sum()
        assert got == edge[(f"edge{k:+d}", "all")]
    assert all(encoded.heads[s][i] == g and len(encoded.heads[s]) == L_s
               for s, i, g, L_s in zip(wc["sentence"], wc["position"], wc["gold"], wc["length"]))
    det = encoded.relations.index("det")
    per_det = wc["heads"][..., wc["relation"] == det].sum(-1)
    assert per_det.tolist() == counts.correct[..., 2 + det].numpy().astype(int).tolist()


def test_uniform_baseline_is_what_a_uniform_head_scores(encoded):
    def uniform(p2w, heads):
        T = len(p2w)
        return np.full((T, T), 1.0 / T, dtype=np.float32)

    df = _known_attention(encoded, uniform)
    got = sas.uniform_baseline(encoded)
    dep = df[(df.direction == "dep") & (df.relation == "all")].uas.iloc[0]
    # the scorer on the same head: "dep" ties are exact (equal sums of equal weights), so first-index tie-breaking
    # is what it does too; the "head" reading's ties are not exact in float32 (means over 1, 2, 3 pieces), so only
    # the rule is checked for it (test below)
    assert got["dep"] == pytest.approx(dep, rel=1e-6)
    rnd = sas.uniform_baseline(encoded, ties="random")
    assert 0 < rnd["head"] < rnd["dep"] and abs(rnd["dep"] - got["dep"]) < 0.05


def test_uniform_baseline_known_answer():
    # words: a(1 piece) bb(2) c(1) dd(2) e(1); parents: a->dd, bb->dd, c->bb, dd root, e->bb
    enc = sas.EncodedTreebank(ids=[np.arange(9)], p2w=[np.array([-1, 0, 1, 1, 2, 3, 3, 4, -1])],
                              heads=[np.array([3, 3, 1, -1, 1])], rels=[np.zeros(5, dtype=np.int64)], relations=["x"])
    # dep, first on ties (bb before dd): a -> bb wrong, bb -> dd right (itself excluded), c -> bb right, e -> bb right
    # head, first: every word's prediction is word 0 (word 1 for word 0): a -> bb wrong, bb, c, e -> a wrong
    assert sas.uniform_baseline(enc) == pytest.approx({"dep": 3 / 4, "head": 0.0})
    # random ties: a 1/2, bb 1, c 1/2, e 1/2 for dep; 1/4 each for head
    assert sas.uniform_baseline(enc, ties="random") == pytest.approx({"dep": 2.5 / 4, "head": 1 / 4})
    with pytest.raises(ValueError, match="ties"):
        sas.uniform_baseline(enc, ties="last")
    # attention to a word averaged over its pieces: every other word ties in both directions, so dep predicts as
    # head does (word 0, or word 1 for word 0): a -> bb wrong, bb, c, e -> a wrong; at random 1/4 each
    assert sas.uniform_baseline(enc, to="mean") == pytest.approx({"dep": 0.0, "head": 0.0})
    assert sas.uniform_baseline(enc, ties="random", to="mean") == pytest.approx({"dep": 1 / 4, "head": 1 / 4})
    with pytest.raises(ValueError, match="to="):
        sas.uniform_baseline(enc, to="max")


def test_mean_over_pieces_sees_no_word_in_a_uniform_head_and_the_same_arcs_in_a_one_piece_head(encoded):
    uniform = lambda p2w, heads: np.full((len(p2w), len(p2w)), 1.0 / len(p2w), dtype=np.float32)  # noqa: E731
    soft = {to: _known_attention(encoded, uniform, to).query("direction == 'dep' and relation == 'all'").soft.iloc[0]
            for to in sas.TO_WORD}
    # the mass on the gold parent: summed, the parent's share of the pieces; averaged, one piece's share
    n_pieces = [np.bincount(p[p >= 0]) for p in encoded.p2w]
    assert any((c > 1).any() for c in n_pieces)  # some words are split, so the two rules differ here
    assert soft["mean"] < soft["sum"]

    # a peaked head: averaging divides the parent's mass by its pieces but it still dominates, so both rules agree
    for to in sas.TO_WORD:
        df = _known_attention(encoded, _gold, to)
        assert df.query("direction == 'dep' and relation == 'all'").uas.iloc[0] == 1.0
    with pytest.raises(ValueError, match="to="):
        sas.word_attention(torch.zeros(1, 1, 1, 2, 2), torch.zeros(1, 1, 2), to="max")


def test_attention_spread_is_zero_for_uniform_rows_and_the_logit_std_otherwise():
    import torch

    from sasutils.sas import attention_spread

    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])  # a sentence of 4 pieces and one of 2 (padded)
    attn = torch.zeros(1, 2, 2, 4, 4, dtype=torch.float64)  # (L, B, H, T, T)
    attn[0, 0, :, :, :] = 0.25  # head 0 and 1 of sentence 0: uniform
    attn[0, 1, :, :, :2] = 0.5
    attn[0, 1, :, 2:, :] = torch.tensor([0.9, 0.05, 0.03, 0.02], dtype=torch.float64)  # padded query rows: not counted
    z = torch.tensor([0.0, 1.0, 3.0, -2.0], dtype=torch.float64)  # head 1 of sentence 0: softmax of known logits
    attn[0, 0, 1] = torch.softmax(z, -1)
    spread, deficit, rows = attention_spread(attn, mask)
    assert rows.item() == 6  # real query rows; padded rows and keys are left out
    assert spread[0, 0].item() == pytest.approx(0.0, abs=1e-12) and deficit[0, 0].item() == pytest.approx(0.0, abs=1e-12)
    assert spread[0, 1].item() == pytest.approx(4 * z.std(unbiased=False).item())  # 4 rows of sentence 0, 2 uniform rows
    p = torch.softmax(z, -1)
    assert deficit[0, 1].item() == pytest.approx(4 * (1 + (p * p.log()).sum().item() / np.log(4)))

    one, _, _ = attention_spread(torch.ones(1, 1, 1, 3, 3, dtype=torch.float64), torch.tensor([[1, 0, 0]]))
    assert one.item() == 0.0
    _, d1, n1 = attention_spread(torch.ones(1, 1, 1, 3, 3, dtype=torch.float64), torch.tensor([[1, 0, 0]]))
    assert d1.item() == 0.0 and n1.item() == 1  # one piece: nothing to spread over
    s0, d0, n0 = attention_spread(torch.zeros(1, 1, 1, 2, 2, dtype=torch.float64), torch.tensor([[0, 0]]))
    assert (s0.item(), d0.item(), n0.item()) == (0.0, 0.0, 0)  # an all-padding sentence adds nothing, and no NaN


def test_attention_spread_of_a_padded_batch_equals_unpadded_sentences_and_the_logits(encoded, tiny_model):
    """On sharpened attention (query and key weights x 6), chunked with padding: each head's summed spread is that of
    the sentences run one at a time, and equals the std of the logits q.k/sqrt(d) built from the modules."""
    import copy

    from sasutils.model import scale_query_key
    from sasutils.sas import attention_spread

    model = copy.deepcopy(tiny_model)
    scale_query_key(model, 6.0)
    enc = sas.first_n(encoded, 12)
    total = None
    with torch.no_grad():
        for batch, attn in sas.chunk_attentions(model, enc, max_tokens=200):
            part = attention_spread(attn.double(), batch.attention_mask)
            total = part if total is None else tuple(a + b for a, b in zip(total, part))
    spread, deficit, n = total
    att = model.bert.encoder.layer[1].attention.self
    H, d = att.num_attention_heads, att.attention_head_size
    by_hand, by_logits, deficits = torch.zeros(H), torch.zeros(H), torch.zeros(H)
    with torch.no_grad(), attention_weights(model):
        for ids in enc.ids:
            out = model.bert(input_ids=torch.as_tensor(ids)[None], output_attentions=True, output_hidden_states=True)
            p = out.attentions[1][0].double()  # (H, T, T)
            by_hand += p.log().std(-1, unbiased=False).sum(-1)
            deficits += (1 + (p * p.log()).sum(-1) / np.log(len(ids))).sum(-1)
            x = out.hidden_states[1][0]  # layer 1's input (T, D)
            q, k = att.query(x).view(len(ids), H, d).transpose(0, 1), att.key(x).view(len(ids), H, d).transpose(0, 1)
            z = (q @ k.transpose(-1, -2) / d ** 0.5).double()  # (H, T, T)
            by_logits += z.std(-1, unbiased=False).sum(-1)
    assert n.item() == sum(len(x) for x in enc.ids)
    assert spread[1].tolist() == pytest.approx(by_hand.tolist(), rel=1e-5)
    assert spread[1].tolist() == pytest.approx(by_logits.tolist(), rel=1e-4)
    # sharpened: ~0.05 against ~1e-5 unsharpened, so the deficit check means something (the value moves a little with
    # the small tokenizer, whose training is not bitwise repeatable)
    assert (deficit[1] / n).min().item() > 0.02
    assert deficit[1].tolist() == pytest.approx(deficits.tolist(), rel=1e-4)
