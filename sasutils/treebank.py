"""Dependency-parsed sentences: readers for the evaluation treebanks.

Every reader returns :class:`ParsedSentence` records: ``words`` (n strings), ``heads`` (n ints,
0-based index of the parent word, ``-1`` for the root) and ``deprels`` (n relation labels; ``"_"``
where the treebank has none, as in the PTB-WSJ Malt-TAB sample).

Formats:

- CoNLL-U (UD English EWT, GUM), parsed with :mod:`conllu`. UD rules: multiword-token range
  lines (``1-2``) are not words (their syntactic words are), empty nodes (``8.1``) belong to the
  enhanced graph only and are ignored; both are counted in :class:`ReadStats`.
- NLTK's PTB-WSJ dependency sample (``dependency_treebank.zip``: ``word<TAB>POS<TAB>head``, Penn2Malt
  style heads, no labels).

Malformed input (missing columns, a head out of range, a cycle, non-UTF-8 bytes) raises
:class:`TreebankError` naming ``file:line``.
"""

from __future__ import annotations

import gzip
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import paths

# Files of the staged treebanks inside the data directory.
TREEBANKS = {
    "ewt-train": "ud_english_ewt/en_ewt-ud-train.conllu.gz",
    "ewt-dev": "ud_english_ewt/en_ewt-ud-dev.conllu",
    "ewt-test": "ud_english_ewt/en_ewt-ud-test.conllu",
    "gum-dev": "ud_english_gum/en_gum-ud-dev.conllu",
    "gum-test": "ud_english_gum/en_gum-ud-test.conllu",
    "wsj": "ptb_wsj_nltk_sample/dependency_treebank.zip",
}
# Public sources, for users who are online (documented; this project reads the data directory).
PUBLIC_SOURCES = {
    "ewt": "https://github.com/UniversalDependencies/UD_English-EWT (tag r2.16)",
    "gum": "https://github.com/UniversalDependencies/UD_English-GUM (tag r2.16)",
    "wsj": "https://github.com/nltk/nltk_data packages/corpora/dependency_treebank.zip",
}


class TreebankError(ValueError):
    """A malformed treebank line; the message names ``file:line``."""


@dataclass(frozen=True)
class ParsedSentence:
    """One sentence of a dependency treebank: its words, each word's parent (0-based index, -1 for the root) and
    relation label."""

    words: tuple[str, ...]
    heads: tuple[int, ...]  # 0-based parent index, -1 = root
    deprels: tuple[str, ...]
    sent_id: str = ""

    def __len__(self) -> int:
        return len(self.words)


@dataclass
class ReadStats:
    """What a reader saw besides plain words (nothing is dropped silently)."""

    sentences: int = 0
    words: int = 0
    multiword_ranges: int = 0
    empty_nodes: int = 0
    skipped: Counter = field(default_factory=Counter)


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a (gzipped) file, decoded line by line so a bad byte is named by line."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TreebankError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None


def _check_tree(heads: list[int], where: str) -> None:
    """Heads in range, exactly one root, no cycle."""
    n = len(heads)
    for i, h in enumerate(heads):
        if not -1 <= h < n or h == i:
            raise TreebankError(f"{where}: word {i + 1} has head {h + 1}, outside 0..{n} or itself")
    roots = sum(h == -1 for h in heads)
    if roots != 1:
        raise TreebankError(f"{where}: sentence has {roots} roots (expected 1)")
    for i in range(n):
        seen, j = set(), i
        while j != -1:
            if j in seen:
                raise TreebankError(f"{where}: heads form a cycle through word {j + 1}")
            seen.add(j)
            j = heads[j]


def read_conllu(path: str | Path, stats: ReadStats | None = None) -> list[ParsedSentence]:
    """Read a CoNLL-U file (optionally .gz) into :class:`ParsedSentence` records."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    out: list[ParsedSentence] = []
    words: list[str] = []
    heads: list[int] = []
    rels: list[str] = []
    sent_id, start = "", 1

    def flush(lineno: int) -> None:
        nonlocal words, heads, rels, sent_id
        if words:
            _check_tree(heads, f"{path}:{start}")
            out.append(ParsedSentence(tuple(words), tuple(heads), tuple(rels), sent_id))
            stats.sentences += 1
            stats.words += len(words)
        words, heads, rels, sent_id = [], [], [], ""

    for lineno, line in _utf8_lines(path):
        line = line.rstrip("\r\n")
        if not line.strip():
            flush(lineno)
            start = lineno + 1
            continue
        if line.startswith("#"):
            if line.startswith("# sent_id"):
                sent_id = line.split("=", 1)[-1].strip()
            if not words:
                start = lineno
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise TreebankError(f"{path}:{lineno}: expected 10 tab-separated columns, found {len(cols)}")
        tid = cols[0]
        if "-" in tid:
            stats.multiword_ranges += 1
            continue
        if "." in tid:
            stats.empty_nodes += 1
            continue
        try:
            idx, head = int(tid), int(cols[6])
        except ValueError:
            raise TreebankError(f"{path}:{lineno}: non-integer ID {tid!r} or HEAD {cols[6]!r}") from None
        if idx != len(words) + 1:
            raise TreebankError(f"{path}:{lineno}: word ID {idx} out of sequence (expected {len(words) + 1})")
        words.append(cols[1])
        heads.append(head - 1)
        rels.append(cols[7].split(":")[0])  # universal relation, subtypes folded (nmod:poss -> nmod)
    flush(lineno + 1 if "lineno" in locals() else 1)
    return out


def read_malt_tab(lines: Iterator[str], where: str, stats: ReadStats | None = None) -> list[ParsedSentence]:
    """Read Malt-TAB lines (``word<TAB>POS<TAB>head``; blank line between sentences)."""
    stats = stats if stats is not None else ReadStats()
    out: list[ParsedSentence] = []
    words: list[str] = []
    heads: list[int] = []
    start = 1
    for lineno, line in enumerate(list(lines) + [""], 1):
        line = line.rstrip("\n")
        if not line.strip():
            if words:
                _check_tree(heads, f"{where}:{start}")
                out.append(ParsedSentence(tuple(words), tuple(heads), ("_",) * len(words), f"{where}:{start}"))
                stats.sentences += 1
                stats.words += len(words)
            words, heads, start = [], [], lineno + 1
            continue
        cols = line.split("\t")
        if len(cols) < 3:
            raise TreebankError(f"{where}:{lineno}: expected word<TAB>POS<TAB>head, found {len(cols)} columns")
        try:
            heads.append(int(cols[2]) - 1)
        except ValueError:
            raise TreebankError(f"{where}:{lineno}: non-integer head {cols[2]!r}") from None
        words.append(cols[0])
    return out


def read_wsj_zip(path: str | Path, stats: ReadStats | None = None) -> list[ParsedSentence]:
    """Read NLTK's ``dependency_treebank.zip`` (all ``wsj_*.dp`` files, in name order)."""
    path = Path(path)
    out: list[ParsedSentence] = []
    with zipfile.ZipFile(path) as zf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".dp")):
            data = zf.read(name)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                line = data[: e.start].count(b"\n") + 1
                raise TreebankError(f"{path}!{name}:{line}: not UTF-8 ({e.reason})") from None
            out.extend(read_malt_tab(text.splitlines(), f"{path}!{name}", stats))
    return out


def load_treebank(
    name: str, data_dir: str | Path | None = None, n: int | None = None, stats: ReadStats | None = None
) -> list[ParsedSentence]:
    """Load a staged treebank by name (``ewt-dev``, ``ewt-test``, ``gum-dev``, ``gum-test``, ``wsj``, ...).

    ``n`` keeps the first n sentences (file order, so it is the same set every time).
    """
    if name not in TREEBANKS:
        raise ValueError(f"unknown treebank {name!r}; choose from {sorted(TREEBANKS)}")
    path = paths.data_file(TREEBANKS[name], data_dir)
    sents = read_wsj_zip(path, stats) if name == "wsj" else read_conllu(path, stats)
    return sents[:n] if n is not None else sents
