"""BLiMP reader and batched PLL scorer, checked against a brute-force reference on real BLiMP sentences."""

import json
import math

import numpy as np
import pytest
import torch
from tokenizers import BertWordPieceTokenizer
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from sasutils import blimp
from sasutils.blimp import BlimpError, load_blimp, pseudo_log_likelihoods

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    """WordPiece tokenizer (lowercase, vocab ~1000) trained on BLiMP sentences."""
    pairs = load_blimp(n_per_paradigm=30, seed=1)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator([s for p in pairs for s in (p.good, p.bad)], vocab_size=1000, min_frequency=1,
                           special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False)
    return BertTokenizerFast(tokenizer_object=wp._tokenizer)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=128, attn_implementation="eager")
    return BertForMaskedLM(cfg).eval()


@pytest.fixture(scope="module")
def sentences():
    """~30 real BLiMP sentences from different paradigms (with multi-piece words at vocab 1000)."""
    pairs = load_blimp(n_per_paradigm=1, seed=0)[::4]
    return [s for p in pairs for s in (p.good, p.bad)][:30]


def brute_force_pll(model, tok, sentence, variant):
    """Reference: one forward per masked piece, one sentence at a time, full-vocabulary logits."""
    enc = tok(sentence, return_special_tokens_mask=True)
    ids, words = torch.tensor(enc["input_ids"]), enc.word_ids()
    total = 0.0
    for t, special in enumerate(enc["special_tokens_mask"]):
        if special:
            continue
        x = ids.clone()
        x[t] = tok.mask_token_id
        if variant == "within_word_l2r":
            for j in range(t + 1, len(ids)):
                if words[j] == words[t]:
                    x[j] = tok.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=x[None]).logits[0, t]  # (V,)
        total += torch.log_softmax(logits, -1)[ids[t]].item()
    return total


def count_rows(model):
    """Hook on the encoder: list of (rows, padded length) of each forward pass."""
    seen = []
    handle = model.bert.register_forward_hook(lambda m, args, kw, out: seen.append(tuple(kw["input_ids"].shape)),
                                              with_kwargs=True)
    return seen, handle


# ----------------------------------------------------------------------------- reader


def test_load_real_blimp():
    pairs = load_blimp()
    assert len(pairs) == 67_000
    assert len({p.uid for p in pairs}) == 67 and len({p.term for p in pairs}) >= 12
    p = pairs[0]
    assert p.uid == "adjunct_island" and p.term == "island_effects" and p.field == "syntax" and p.pair_id == "0"
    assert p.good == "Who should Derek hug after shocking Richard?"


def test_sample_is_fixed():
    a = load_blimp(n_per_paradigm=5, seed=3)
    assert len(a) == 5 * 67
    assert a == load_blimp(n_per_paradigm=5, seed=3)
    assert a != load_blimp(n_per_paradigm=5, seed=4)
    # a paradigm's sample does not depend on which other paradigms are loaded
    one = load_blimp(paradigms=["causative"], n_per_paradigm=5, seed=3)
    assert one == [p for p in a if p.uid == "causative"]


GOOD = {"sentence_good": "A cat sleeps.", "sentence_bad": "A cat sleep.", "field": "morphology",
        "linguistics_term": "subject_verb_agreement", "UID": "toy", "pairID": "0"}


@pytest.mark.parametrize("bad_line, why", [
    (json.dumps({k: v for k, v in GOOD.items() if k != "linguistics_term"}), "missing field"),
    (json.dumps({**GOOD, "sentence_bad": "  "}), "empty"),
    ('{"sentence_good": "A cat sleeps.", ', "bad JSON"),
])
def test_reader_errors_name_file_line(tmp_path, bad_line, why):
    d = tmp_path / "blimp" / "data"
    d.mkdir(parents=True)
    (d / "toy.jsonl").write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n" + bad_line + "\n")
    with pytest.raises(BlimpError, match=rf"toy\.jsonl:3: .*{why}"):
        load_blimp(data_dir=tmp_path)


# ----------------------------------------------------------------------------- scorer


@pytest.mark.parametrize("variant", ["original", "within_word_l2r"])
def test_matches_brute_force(model, tok, sentences, variant):
    ref = np.array([brute_force_pll(model, tok, s, variant) for s in sentences])
    got = pseudo_log_likelihoods(model, tok, sentences, variant=variant, max_tokens_per_batch=256)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_variants_differ_only_on_multi_piece_words(model, tok, sentences):
    def is_multi(s):
        return len(tok(s)["input_ids"]) - 2 > len(set(tok(s).word_ids()) - {None})

    # at vocab 1000 most BLiMP sentences have a multi-piece word: add a few that have none
    whole = [s for p in load_blimp(n_per_paradigm=3) for s in (p.good, p.bad) if not is_multi(s)][:4]
    sentences = sentences + whole
    o = pseudo_log_likelihoods(model, tok, sentences, variant="original")
    w = pseudo_log_likelihoods(model, tok, sentences, variant="within_word_l2r")
    multi = np.array([is_multi(s) for s in sentences])
    assert multi.any() and (~multi).any()  # the sample exercises both cases
    np.testing.assert_allclose(o[~multi], w[~multi], atol=1e-5)
    assert np.all(np.abs(o[multi] - w[multi]) > 1e-6)


def test_known_answer(tok):
    """Head forced to a fixed distribution q = softmax(bias), whatever the input: PLL = sum_t log q[w_t]."""
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    m = BertForMaskedLM(cfg)
    with torch.no_grad():
        ln = m.cls.predictions.transform.LayerNorm
        ln.weight.zero_(), ln.bias.zero_()  # transform output = 0, so logits = decoder bias
        bias = torch.zeros(len(tok))
        the = tok.convert_tokens_to_ids("the")
        bias[the] = 3.0
        m.cls.predictions.bias.copy_(bias)
    V = len(tok)
    log_z = math.log(math.exp(3.0) + V - 1)
    s = "the cat saw the dog"
    n = len(tok(s)["input_ids"]) - 2
    assert tok.tokenize(s).count("the") == 2
    expected = 2 * (3.0 - log_z) + (n - 2) * (0.0 - log_z)
    for variant in blimp.VARIANTS:
        got = pseudo_log_likelihoods(m, tok, [s], variant=variant)
        assert got[0] == pytest.approx(expected, abs=1e-4)


def test_dedup_runs_each_sentence_once(model, tok, sentences):
    seen, handle = count_rows(model)
    try:
        once = pseudo_log_likelihoods(model, tok, sentences[:5])
        rows_once = sum(r for r, _ in seen)
        seen.clear()
        many = pseudo_log_likelihoods(model, tok, sentences[:5] * 3 + sentences[:1])
        rows_many = sum(r for r, _ in seen)
    finally:
        handle.remove()
    assert rows_once == rows_many == sum(len(tok(s)["input_ids"]) - 2 for s in sentences[:5])
    np.testing.assert_array_equal(many, np.concatenate([once] * 3 + [once[:1]]))


def test_memory_cap(model, tok, sentences):
    long = " ".join(sentences[:6])  # one long sentence (~60 pieces)
    L = len(tok(long)["input_ids"])
    assert 40 < L <= 128
    cap = 4 * L  # so its L - 2 copies need many sub-batches
    seen, handle = count_rows(model)
    try:
        small = pseudo_log_likelihoods(model, tok, [long] + sentences, max_tokens_per_batch=cap)
    finally:
        handle.remove()
    assert all(r * t <= cap for r, t in seen)
    assert sum(t == L for _, t in seen) > 1  # the long sentence's copies were split
    big = pseudo_log_likelihoods(model, tok, [long] + sentences, max_tokens_per_batch=100_000)
    np.testing.assert_allclose(small, big, atol=1e-5)
    # a cap below one copy still makes progress, one row at a time
    tiny = pseudo_log_likelihoods(model, tok, sentences[:2], max_tokens_per_batch=1)
    np.testing.assert_allclose(tiny, big[1:3], atol=1e-5)


def test_score_summarize_and_callback(model, tok):
    pairs = load_blimp(paradigms=["causative", "drop_argument", "adjunct_island"], n_per_paradigm=4)
    df = blimp.score_blimp(model, tok, pairs)
    assert list(df.columns) == ["uid", "term", "field", "pair_id", "pll_good", "pll_bad", "correct"]
    assert len(df) == 12 and (df["correct"] == (df["pll_good"] > df["pll_bad"])).all()
    t = blimp.blimp_table(df)
    s = blimp.summarize_blimp(df)
    assert s["blimp_mean"] == pytest.approx(t["accuracy"].mean())
    acc = t["accuracy"].to_numpy()
    assert s["blimp_mean_se"] == pytest.approx(np.sqrt((acc * (1 - acc) / 4).sum()) / 3)
    assert {"blimp_term/argument_structure", "blimp_term/island_effects"} <= set(s)

    cb = blimp.make_blimp_callback(tok, n_per_paradigm=1)
    assert len(cb.pairs) == 67
    model.train()
    out = cb(model, step=10)
    assert model.training  # mode restored
    model.eval()
    assert 0 <= out["blimp_mean"] <= 1 and out["blimp_n_pairs"] == 67
    assert not model.training
    out2 = cb(model, step=20)
    assert not model.training and out2 == out
