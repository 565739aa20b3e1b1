"""WordPiece tokenizers trained on the training corpus (uncased, like BERT's).

A trained tokenizer is cached by (corpus, size) and saved into each run directory, from where
``transformers.AutoTokenizer.from_pretrained(run_dir / "tokenizer")`` reloads it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from tokenizers import BertWordPieceTokenizer
from transformers import AutoTokenizer, BertTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> BertTokenizerFast:
    """Train an uncased WordPiece vocabulary of ``vocab_size`` on ``texts``."""
    if vocab_size < len(SPECIAL_TOKENS) + 100:
        raise ValueError(f"vocab_size={vocab_size} is too small (need at least {len(SPECIAL_TOKENS) + 100})")
    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=True, clean_text=True)
    wp.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                           special_tokens=SPECIAL_TOKENS, show_progress=False)
    return BertTokenizerFast(tokenizer_object=wp._tokenizer, do_lower_case=True,
                             unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]")


def cached_wordpiece(texts_fn, vocab_size: int, cache_path: Path) -> BertTokenizerFast:
    """Load the tokenizer at ``cache_path`` or train it on ``texts_fn()`` and save it there."""
    if (cache_path / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(cache_path)
    save_atomic(train_wordpiece(texts_fn(), vocab_size), cache_path)
    return AutoTokenizer.from_pretrained(cache_path)


def save_atomic(tokenizer, path: Path) -> None:
    """``save_pretrained`` into a temporary folder, then rename: a killed save leaves no half folder."""
    path = Path(path)
    tmp = path.with_name("." + path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.rename(tmp, path)
