import numpy as np
import pandas as pd
import pytest

from sasutils.corpus import CorpusError, clear_to_ud, pack, paragraphs, parser_agreement


def test_preposition_becomes_case_of_its_object():
    # ClearNLP: sat <- on(prep) <- mat(pobj);  UD: sat <- mat(obl) <- on(case)
    words = ["The", "cat", "sat", "on", "the", "mat", "."]
    heads = [1, 2, -1, 2, 5, 3, 2]
    deps = ["det", "nsubj", "ROOT", "prep", "det", "pobj", "punct"]
    assert clear_to_ud(words, heads, deps) == [1, 2, -1, 5, 5, 2, 2]


def test_copula_predicate_heads_clause_and_cc_moves_to_next_conjunct():
    words = ["John", "is", "a", "doctor", "and", "Mary", "is", "happy", "."]
    heads = [1, -1, 3, 1, 1, 6, 1, 6, 6]
    deps = ["nsubj", "ROOT", "det", "attr", "cc", "nsubj", "conj", "acomp", "punct"]
    #            John is  a  doctor and Mary is happy .
    expected = [3, 3, 3, -1, 7, 7, 7, 3, 7]
    assert clear_to_ud(words, heads, deps) == expected


def test_auxiliary_be_is_not_a_copula():
    words = ["She", "is", "running", "fast"]
    heads = [2, 2, -1, 2]
    deps = ["nsubj", "aux", "ROOT", "advmod"]
    assert clear_to_ud(words, heads, deps) == heads


def test_conversion_raises_agreement_with_gold_ud(ewt_dev):
    agree = parser_agreement(ewt_dev[:300])
    assert agree["uas_converted"] > agree["uas_spacy"] + 0.1  # measured on all of dev: 0.56 -> 0.77


def test_pack_maps_arcs_to_first_pieces(small_tokenizer):
    df = pd.DataFrame({"words": [["unbelievably", "good", "cats"], ["dogs", "bark"]],
                       "heads": [[1, -1, 1], [1, -1]]})
    p = pack(df, small_tokenizer, seq_len=32)
    assert len(p) == 1  # both sentences share one row
    ids, par = p.input_ids[0], p.parents[0]
    toks = small_tokenizer.convert_ids_to_tokens(ids.tolist())
    assert toks[0] == "[CLS]" and toks.count("[SEP]") == 2 and toks.count("[CLS]") == 2
    first = [i for i, t in enumerate(toks) if t not in ("[CLS]", "[SEP]", "[PAD]") and not t.startswith("##")]
    unbeliev, good, cats, dogs, bark = first
    assert par[unbeliev] == good and par[cats] == good and par[good] == -1
    assert par[dogs] == bark and par[bark] == -1
    cont = [i for i, t in enumerate(toks) if t.startswith("##")]
    assert cont and all(par[i] == -1 for i in cont)  # later pieces carry no arc


def test_pack_truncates_and_counts(small_tokenizer):
    n = 40
    df = pd.DataFrame({"words": [["the"] * n], "heads": [[-1] + [0] * (n - 1)]})  # "the": one piece
    p = pack(df, small_tokenizer, seq_len=16)
    assert p.truncated == 1 and p.input_ids.shape == (1, 16)
    assert (p.parents[0] < 16).all() and (p.parents[0][1:15] >= 0).sum() == 13


def test_corpus_sources(tmp_path):
    first = next(paragraphs("wikipedia"))
    assert first.startswith("Anarchism is a political philosophy")
    assert len(next(paragraphs("gutenberg")).split()) >= 3
    with pytest.raises(CorpusError, match="unknown corpus"):
        next(paragraphs("reddit"))
    (tmp_path / "wikipedia_en_2015_sample" / "AA").mkdir(parents=True)
    with pytest.raises(CorpusError, match="no wiki_"):
        next(paragraphs("wikipedia", tmp_path))


def test_packed_rows_are_read_only_with_the_tokenizer_they_were_packed_with(tmp_path, monkeypatch):
    """A packed file whose tokenizer was replaced (retrained: other pieces, other ids) or that carries no signature
    (written before it) is packed again, so rows are never read with ids of another vocabulary."""
    import numpy as np

    from sasutils import corpus as C, paths
    from sasutils.tokenizer import save_atomic, train_wordpiece

    real = paths.cache_dir

    def cache_dir(sub=""):  # tokenizers and packed rows in tmp_path; the parse is shared with the other tests
        if sub == "parses":
            return real(sub)
        (tmp_path / sub).mkdir(exist_ok=True)
        return tmp_path / sub

    monkeypatch.setattr(C.paths, "cache_dir", cache_dir)
    kw = dict(source="wikipedia", n_sentences=3000, vocab_size=1000, seq_len=32, eval_sentences=300, progress=False)
    first = C.load_corpus(**kw)
    (pk,) = (tmp_path / "packed").glob("*.npz")
    assert str(np.load(pk)["vocab_sig"]) == C.vocab_signature(first.tokenizer)
    assert C.load_corpus(**kw).train.input_ids.tobytes() == first.train.input_ids.tobytes()  # read back, same rows
    # the cached tokenizer replaced by another training (other pieces): the rows are packed again with it
    (tok_dir,) = (tmp_path / "tokenizers").iterdir()
    other = train_wordpiece(first.tokenizer.batch_decode(first.train.input_ids[:300], skip_special_tokens=True), 1000)
    save_atomic(other, tok_dir)
    second = C.load_corpus(**kw)
    assert second.tokenizer.get_vocab() == other.get_vocab() != first.tokenizer.get_vocab()
    assert str(np.load(pk)["vocab_sig"]) == C.vocab_signature(other)
    assert second.train.input_ids.tobytes() != first.train.input_ids.tobytes()  # the ids of the new pieces
    # a file written before the signature existed is packed again too
    z = dict(np.load(pk))
    del z["vocab_sig"]
    np.savez(pk, **z)
    C.load_corpus(**kw)
    assert str(np.load(pk)["vocab_sig"]) == C.vocab_signature(other)
