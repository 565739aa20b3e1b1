"""WordPiece tokenizers trained on the training corpus (uncased, like BERT's).

A trained tokenizer is cached by (corpus, size) and saved into each run directory, from where
``transformers.AutoTokenizer.from_pretrained(run_dir / "tokenizer")`` reloads it.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from tokenizers import BertWordPieceTokenizer
from tokenizers.models import WordPiece
from transformers import AutoTokenizer, BertTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def canonical_vocab(vocab: dict[str, int]) -> dict[str, int]:
    """The same pieces with ids that depend on the pieces alone: the special tokens first (in
    :data:`SPECIAL_TOKENS` order), then every other piece in sorted order.

    The ``tokenizers`` trainer breaks ties between equally frequent pieces in an order that changes from one
    training to the next (516 of 8,192 ids moved between two trainings on the same 119k Wikipedia sentences),
    and an id picks the token's initial embedding row: without this a rebuilt cache would train a different
    model from the same seed. WordPiece tokenizes by the set of pieces, so the pieces a text becomes do not
    change.
    """
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"vocabulary lacks the special tokens {missing}")
    rest = sorted(t for t in vocab if t not in SPECIAL_TOKENS)
    return {t: i for i, t in enumerate([*SPECIAL_TOKENS, *rest])}


def train_wordpiece(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
                    canonical: bool = True) -> BertTokenizerFast:
    """Train an uncased WordPiece vocabulary of ``vocab_size`` on ``texts``, its ids in :func:`canonical_vocab` order
    (``canonical=False``: in the trainer's own order).

    The trainer's choice of pieces can itself depend on how it breaks ties: on a small corpus (EWT-dev, 2,000 pieces)
    8 trainings gave 4 different sets of pieces; on the presets' 119k Wikipedia sentences (8,192 pieces) six gave one.
    A run therefore keeps its own tokenizer, and :func:`sasutils.train.train` refuses to resume one whose ids differ.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 100:
        raise ValueError(f"vocab_size={vocab_size} is too small (need at least {len(SPECIAL_TOKENS) + 100})")
    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=True, clean_text=True)
    wp.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                           special_tokens=SPECIAL_TOKENS, show_progress=False)
    return canonicalize(wp._tokenizer) if canonical else _wrap(wp._tokenizer)


def canonicalize(tokenizer) -> BertTokenizerFast:
    """A copy of a WordPiece tokenizer (``tokenizers.Tokenizer`` or a fast ``transformers`` one) with the same
    pieces renumbered by :func:`canonical_vocab`."""
    backend = copy.deepcopy(getattr(tokenizer, "backend_tokenizer", tokenizer))
    old = backend.model
    backend.model = WordPiece(canonical_vocab(backend.get_vocab(with_added_tokens=False)), unk_token=old.unk_token,
                              continuing_subword_prefix=old.continuing_subword_prefix,
                              max_input_chars_per_word=old.max_input_chars_per_word)
    return _wrap(backend)


def _wrap(backend) -> BertTokenizerFast:
    return BertTokenizerFast(tokenizer_object=backend, do_lower_case=True,
                             unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]")


def cached_wordpiece(texts_fn, vocab_size: int, cache_path: Path) -> BertTokenizerFast:
    """Load the tokenizer at ``cache_path``, or train it on ``texts_fn()`` and save it there.

    Runs started at once on an empty cache (a sweep's workers) each train one, and two trainings can choose
    different pieces (see :func:`train_wordpiece`): the first to save wins, and every run, its own training
    discarded, uses the cached tokenizer. Packed rows cached beside it carry its signature
    (:func:`sasutils.corpus.vocab_signature`) and are packed again if it changes.
    """
    cache_path = Path(cache_path)
    if not (cache_path / "tokenizer.json").exists():
        if cache_path.is_dir() and any(cache_path.iterdir()):  # an interrupted copy: not to be trained over silently
            raise FileNotFoundError(f"{cache_path} holds no tokenizer.json (an interrupted copy?): delete it so that "
                                    "the tokenizer is trained again")
        save_atomic(train_wordpiece(texts_fn(), vocab_size), cache_path, replace=False)
        if not (cache_path / "tokenizer.json").exists():  # an empty folder kept where renaming onto it fails
            raise FileNotFoundError(f"{cache_path} holds no tokenizer.json after saving: delete it and try again")
    return AutoTokenizer.from_pretrained(cache_path)


def save_atomic(tokenizer, path: Path, replace: bool = True) -> None:
    """``save_pretrained`` into a temporary folder of its own beside ``path``, then rename: a killed save leaves no
    half folder, and processes saving at once do not write into each other's. ``replace=False``: if ``path`` exists
    by then (another process saved first), keep it and discard this copy (on Windows an existing empty folder at
    ``path`` is kept too, and :func:`cached_wordpiece` then asks for it to be deleted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        tokenizer.save_pretrained(tmp)
        if replace:
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.rename(tmp, path)  # atomic; onto an existing non-empty folder it fails
        except OSError:
            if replace or not path.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing left after a rename; the discarded copy otherwise
