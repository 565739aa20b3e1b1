"""WordPiece training: ids that depend on the pieces alone, so a rebuilt cache trains the same model."""

import copy
import random

import pytest

from sasutils.tokenizer import SPECIAL_TOKENS, canonical_vocab, canonicalize, train_wordpiece


def test_canonical_vocab_orders_specials_then_sorted_pieces():
    vocab = {"##b": 0, "[MASK]": 1, "a": 2, "[PAD]": 3, "[UNK]": 4, "[SEP]": 5, "[CLS]": 6, "##a": 7}
    out = canonical_vocab(vocab)
    assert list(out) == [*SPECIAL_TOKENS, "##a", "##b", "a"]
    assert list(out.values()) == list(range(len(vocab)))
    # the ids depend on the set of pieces, not on the order they came in
    assert canonical_vocab(dict(reversed(list(vocab.items())))) == out


def test_canonical_vocab_names_missing_specials():
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        canonical_vocab({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4})


@pytest.fixture(scope="module")
def raw_tokenizer(ewt_dev):
    """The trainer's own numbering (``canonical=False``)."""
    return train_wordpiece((" ".join(s.words) for s in ewt_dev), vocab_size=2000, canonical=False)


def test_ids_do_not_depend_on_the_trainers_numbering(raw_tokenizer):
    """Two trainings that found the same pieces but numbered them differently give the same tokenizer."""
    from tokenizers.models import WordPiece

    backend = copy.deepcopy(raw_tokenizer.backend_tokenizer)
    pieces = [t for t in backend.get_vocab() if t not in SPECIAL_TOKENS]
    random.Random(0).shuffle(pieces)
    backend.model = WordPiece({**{t: i for i, t in enumerate(SPECIAL_TOKENS)},
                               **{t: i for i, t in enumerate(pieces, len(SPECIAL_TOKENS))}}, unk_token="[UNK]")
    shuffled = canonicalize(backend)
    assert shuffled.get_vocab() != raw_tokenizer.get_vocab()
    assert canonicalize(raw_tokenizer).get_vocab() == shuffled.get_vocab() == canonical_vocab(raw_tokenizer.get_vocab())


def test_canonical_ids_tokenize_like_the_trainer(ewt_dev, raw_tokenizer):
    """Renumbering changes ids only: every sentence becomes the pieces of the trainer's own numbering."""
    canon = canonicalize(raw_tokenizer)
    assert [canon.get_vocab()[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    for s in ewt_dev[:300]:
        text = " ".join(s.words)
        assert canon.tokenize(text) == raw_tokenizer.tokenize(text)
        assert canon.convert_ids_to_tokens(canon(text)["input_ids"]) == ["[CLS]", *raw_tokenizer.tokenize(text), "[SEP]"]


def test_runs_training_at_once_on_an_empty_cache_all_use_the_first_saved_tokenizer(ewt_dev, tmp_path, monkeypatch):
    """Two trainings can choose different pieces: a run whose training lost the race to the cache uses the cached
    tokenizer, not its own, so the runs and the packed data share one vocabulary."""
    import sasutils.tokenizer as tk

    texts = [" ".join(s.words) for s in ewt_dev[:500]]
    first = train_wordpiece(texts[:250], vocab_size=300)  # what "another process" saves first
    mine = train_wordpiece(texts, vocab_size=400)
    assert first.get_vocab() != mine.get_vocab()
    cache = tmp_path / "tok"

    def racing_train(texts, vocab_size):  # the other process saves while this one trains
        tk.save_atomic(first, cache)
        return mine

    monkeypatch.setattr(tk, "train_wordpiece", racing_train)
    got = tk.cached_wordpiece(lambda: iter(texts), 400, cache)
    assert got.get_vocab() == first.get_vocab()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # the losing copy is cleaned up
    # with no race it trains, saves and returns its own
    monkeypatch.setattr(tk, "train_wordpiece", lambda texts, vocab_size: mine)
    assert tk.cached_wordpiece(lambda: iter(texts), 400, tmp_path / "tok2").get_vocab() == mine.get_vocab()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("")
    monkeypatch.setattr(tk, "train_wordpiece", lambda texts, vocab_size: pytest.fail("trained over junk"))
    with pytest.raises(FileNotFoundError, match="junk"):  # before any training
        tk.cached_wordpiece(lambda: iter(texts), 400, tmp_path / "junk")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary folder left anywhere
