"""Syntactic Attention Structure (SAS): how well attention heads follow dependency arcs.

Method of Clark et al. (2019), as used by Chen et al. (2024):

1. Word-level attention. With P (W, T) the piece->word indicator of a sentence and A (T, T) one
   head's attention, ``A_word = diag(1/|pieces(w)|) P A P^T``: attention *from* a word is the mean
   over its pieces, attention *to* a word is the sum over its pieces. ``[CLS]``/``[SEP]`` are dropped.
   (``to="mean"`` averages the attention to a word over its pieces instead: a what-if reading,
   :func:`sasutils.measure.word_rule_readings`, not the SAS scalar.)
2. Predicted parent = argmax over the other words (self excluded; first index on ties; no
   prediction if none of them gets any attention), in two directions:
   ``dep`` -- the word that i attends to most (dependent -> head);
   ``head`` -- the word that attends to i most (the transpose; a head whose rows are parents).
3. UAS of (layer, head, direction) = fraction of non-root words whose predicted parent is the gold
   parent. ``relation="all"`` excludes root words; ``"all+root"`` counts them in the denominator
   (they can never be right: the paper's "all" row). Per relation: the same over words with that
   relation. Fixed-offset baselines: parent = i + k, k in -3..3.
4. The **SAS scalar** = UAS of the single best (layer, head, direction) over all words, root
   excluded (``sas_uas``; ``sas_uas_root`` is the same head set scored with root words counted).
   The soft variant is the mean attention mass on the gold parent.

Everything is vectorised over sentences, layers and heads (einsum + argmax on an (L, B, H, W, W)
tensor), sentences are length-sorted and chunked so memory stays bounded; the same code runs on
CPU and GPU. ``tests/test_sas.py`` keeps the plain per-sentence, per-head reference loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .model import attention_weights
from .treebank import ParsedSentence, load_treebank

OFFSETS = (-3, -2, -1, 1, 2, 3)
DIRECTIONS = ("dep", "head")
TO_WORD = ("sum", "mean")  # attention to a word: summed over its pieces (Clark et al.; the SAS scalar) or averaged


def check_to_word(to: str) -> None:
    """A clear error for a rule ``to`` not in :data:`TO_WORD` (before any compute)."""
    if to not in TO_WORD:
        raise ValueError(f"parameter to={to!r}: must be one of {TO_WORD}")


@dataclass
class EncodedTreebank:
    """Sentences as WordPiece ids with their piece->word map and gold arcs.

    Per sentence s: ``ids[s]`` (T_s,) including [CLS]/[SEP]; ``p2w[s]`` (T_s,) word index of each
    piece, -1 for specials; ``heads[s]`` (W_s,) gold parent word, -1 for root; ``rels[s]`` (W_s,)
    index into ``relations``.
    """

    ids: list[np.ndarray]
    p2w: list[np.ndarray]
    heads: list[np.ndarray]
    rels: list[np.ndarray]
    relations: list[str]
    skipped_too_long: int = 0
    unk_words: int = 0  # words that tokenized to zero pieces and were given one [UNK] piece
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def encode_treebank(
    sentences: Sequence[ParsedSentence], tokenizer, max_len: int, relations: Sequence[str] | None = None
) -> EncodedTreebank:
    """Tokenize parsed sentences for scoring (``max_len`` includes [CLS] and [SEP]).

    Sentences whose pieces do not fit are skipped and counted (``skipped_too_long``); a word that
    tokenizes to zero pieces gets one [UNK] piece and is counted (``unk_words``).
    """
    rel_names = sorted({r for s in sentences for r in s.deprels}) if relations is None else list(relations)
    rel_index = {r: i for i, r in enumerate(rel_names)}
    enc = tokenizer([list(s.words) for s in sentences], is_split_into_words=True, add_special_tokens=False)
    out = EncodedTreebank([], [], [], [], rel_names)
    for k, s in enumerate(sentences):
        ids, wids = enc["input_ids"][k], enc.word_ids(k)
        if len(set(wids)) != len(s.words):  # some word vanished (e.g. only control characters)
            ids, wids = [], []
            for w, word in enumerate(s.words):
                piece = tokenizer(word, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
                out.unk_words += not tokenizer(word, add_special_tokens=False)["input_ids"]
                ids += piece
                wids += [w] * len(piece)
        if len(ids) + 2 > max_len:
            out.skipped_too_long += 1
            continue
        out.ids.append(np.array([tokenizer.cls_token_id, *ids, tokenizer.sep_token_id], dtype=np.int64))
        out.p2w.append(np.array([-1, *wids, -1], dtype=np.int64))
        out.heads.append(np.array(s.heads, dtype=np.int64))
        out.rels.append(np.array([rel_index.get(r, -1) for r in s.deprels], dtype=np.int64))
    if out.skipped_too_long:
        out.notes.append(f"skipped {out.skipped_too_long} of {len(sentences)} sentences longer than {max_len} pieces")
    if out.unk_words:
        out.notes.append(f"{out.unk_words} words tokenized to zero pieces; each scored as one [UNK] piece")
    return out


@dataclass
class Batch:
    """Padded tensors for a chunk of sentences (B sentences, T pieces, W words)."""

    index: np.ndarray  # (B,) sentence indices into the EncodedTreebank
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    piece_word: torch.Tensor  # (B, W, T) 1 where piece t belongs to word w
    heads: torch.Tensor  # (B, W) gold parent, -1 root, -2 padding
    rels: torch.Tensor  # (B, W) relation index, -1 none/padding


def batches(enc: EncodedTreebank, max_tokens: int = 4096, device=None) -> Iterator[Batch]:
    """Length-sorted chunks of at most ``max_tokens`` padded pieces (B * T)."""
    order = np.argsort([len(x) for x in enc.ids], kind="stable")
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j - i + 1) * len(enc.ids[order[j]]) <= max_tokens:
            j += 1
        idx = order[i:j]
        T = max(len(enc.ids[s]) for s in idx)
        W = max(len(enc.heads[s]) for s in idx)
        B = len(idx)
        ids = torch.zeros(B, T, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.long)
        pw = torch.zeros(B, W, T)
        heads = torch.full((B, W), -2, dtype=torch.long)
        rels = torch.full((B, W), -1, dtype=torch.long)
        for b, s in enumerate(idx):
            n, w = len(enc.ids[s]), len(enc.heads[s])
            ids[b, :n] = torch.from_numpy(enc.ids[s])
            mask[b, :n] = 1
            t = np.nonzero(enc.p2w[s] >= 0)[0]
            pw[b, enc.p2w[s][t], t] = 1.0
            heads[b, :w] = torch.from_numpy(enc.heads[s])
            rels[b, :w] = torch.from_numpy(enc.rels[s])
        yield Batch(idx, *(x.to(device) for x in (ids, mask, pw, heads, rels)))
        i = j


def word_attention(attn: torch.Tensor, piece_word: torch.Tensor, to: str = "sum") -> torch.Tensor:
    """Word-level attention (L, B, H, W, W) from piece attention (L, B, H, T, T).

    ``A_word[i, j] = mean_{t in i} sum_{u in j} A[t, u]`` (from = mean, to = sum; specials dropped): Clark et al.'s
    rule, the project's SAS. ``to="mean"``: ``mean_{t in i} mean_{u in j} A[t, u]``, the attention to a word
    averaged over its pieces, so that a uniform head favours no word (every candidate ties) -- a what-if reading for
    the regime chapter, not the SAS scalar's definition.
    """
    check_to_word(to)
    pw = piece_word.to(attn.dtype)  # (B, W, T)
    from_w = pw / pw.sum(-1, keepdim=True).clamp(min=1)
    to_w = from_w if to == "mean" else pw
    to_words = attn @ to_w.transpose(1, 2)[None, :, None]  # (L, B, H, T, W)
    return from_w[None, :, None] @ to_words  # (L, B, H, W, W)


@dataclass
class Counts:
    """Sufficient statistics; UAS = correct / n. Shapes: (L, H, 2 directions, K+2 relation slots).

    Relation slot 0 = "all" (root excluded), slot 1 = "all+root", slot 2+k = relation k.
    """

    correct: torch.Tensor
    n: torch.Tensor
    soft: torch.Tensor  # summed attention mass on the gold arc

    def __iadd__(self, other: "Counts") -> "Counts":
        self.correct += other.correct
        self.n += other.n
        self.soft += other.soft
        return self


def predicted_parents(aw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each word's predicted parent in both directions, from word attention ``aw`` (..., W, W).

    Returns ``(pred_dep, pred_head)`` (..., W): the word that i attends to most, and the word that
    attends to i most; -1 where no other word gets any attention (no prediction). Self is excluded by
    zeroing the diagonal of ``aw`` **in place** (pass a fresh tensor, e.g. from :func:`word_attention`);
    padding words already have all-zero rows and columns. Attention is non-negative, so the argmax
    over these values is the argmax over the real candidates (first index on ties).
    """
    aw.diagonal(dim1=-2, dim2=-1).zero_()
    best, pred_dep = aw.max(-1)
    pred_dep = pred_dep.masked_fill(best <= 0, -1)
    best, pred_head = aw.max(-2)
    pred_head = pred_head.masked_fill(best <= 0, -1)
    return pred_dep, pred_head


def score_attention(attn: torch.Tensor, batch: Batch, n_rel: int, to: str = "sum") -> Counts:
    """Counts for one chunk. ``attn``: (L, B, H, T, T) attention of the chunk's sentences; ``to``: see
    :func:`word_attention`."""
    aw = word_attention(attn, batch.piece_word, to)  # (L, B, H, W, W)
    L, B, H, W, _ = aw.shape
    heads = batch.heads
    word_ok = heads >= -1  # real words (root included)
    pred_dep, pred_head = predicted_parents(aw)  # (L, B, H, W); zeroes aw's diagonal (a fresh tensor)
    gold = heads.clamp(min=0)
    nonroot = heads >= 0  # (B, W)
    rel_1h = torch.zeros(B, W, n_rel + 2, device=aw.device, dtype=aw.dtype)
    rel_1h[..., 0] = nonroot.to(aw.dtype)
    rel_1h[..., 1] = word_ok.to(aw.dtype)
    r = batch.rels.clamp(min=0)
    rel_1h[..., 2:].scatter_(-1, r.unsqueeze(-1), (nonroot & (batch.rels >= 0)).to(aw.dtype).unsqueeze(-1))
    g = gold[None, :, None, :]  # (1, B, 1, W)
    correct = torch.stack([(pred_dep == g), (pred_head == g)], dim=2).to(aw.dtype)  # (L, B, 2, H, W)
    correct = correct * nonroot[None, :, None, None, :]
    # soft: dep = mass i puts on its parent; head = mass the parent puts on i
    idx = gold[None, :, None, :, None].expand(L, B, H, W, 1)
    soft_dep = aw.gather(-1, idx).squeeze(-1)  # (L, B, H, W)
    soft_head = aw.transpose(-1, -2).gather(-1, idx).squeeze(-1)
    soft = torch.stack([soft_dep, soft_head], dim=2) * nonroot[None, :, None, None, :]
    n = rel_1h.sum((0, 1))  # (K+2,)
    return Counts(
        correct=torch.einsum("lbdhw,bwk->lhdk", correct, rel_1h),
        n=n.expand(L, H, 2, n_rel + 2).clone(),
        soft=torch.einsum("lbdhw,bwk->lhdk", soft, rel_1h),
    )


def offset_baselines(enc: EncodedTreebank, mirror: bool = False) -> pd.DataFrame:
    """UAS of 'parent = i + k' for k in OFFSETS, over all words and per relation (root excluded).

    ``mirror=True``: the edge rule of :func:`offset_correct` (i - k where i + k is outside the sentence);
    rows are then labelled ``edge{k:+d}`` with ``layer`` = -2; the tables' "best offset" (:func:`summarize`,
    :func:`sasutils.measure.best_heads`, :func:`sasutils.measure.held_out_relations`) is taken over ``layer`` = -1
    only, so the two never mix.
    """
    rows = []
    names = ["all", "all+root", *enc.relations]
    for k in OFFSETS:
        correct = np.zeros(len(names))
        n = np.zeros(len(names))
        for h, r in zip(enc.heads, enc.rels):
            i = np.arange(len(h))
            ok = offset_correct(i, len(h), h, k, mirror) & (h >= 0)
            nr = h >= 0
            correct[0] += ok.sum()
            n[0] += nr.sum()
            correct[1] += ok.sum()
            n[1] += len(h)
            np.add.at(correct, 2 + r[nr & (r >= 0)], ok[nr & (r >= 0)])
            np.add.at(n, 2 + r[nr & (r >= 0)], 1)
        for name, c, m in zip(names, correct, n):
            rows.append(dict(layer=-2 if mirror else -1, head=-1, direction=f"{'edge' if mirror else 'offset'}{k:+d}",
                             relation=name, n=int(m), correct=int(c), uas=c / m if m else np.nan, soft=np.nan))
    return pd.DataFrame(rows)


def uniform_baseline(enc: EncodedTreebank, ties: str = "first", to: str = "sum") -> dict[str, float]:
    """UAS of a head that attends uniformly to every piece: a reference level for the SAS scalar at initialisation.

    With ``A[t, u] = 1 / T`` for the T pieces of a sentence (what a freshly initialised BERT's near-uniform
    attention approaches), word-level attention to word j is proportional to its number of pieces, so ``dep``
    predicts the other word with the most pieces, and every word gives word i the same mass, so ``head`` predicts
    any other word. Returns ``{"dep": uas, "head": uas}`` over non-root words. It depends on the tokenizer alone
    (more words split into several pieces: a higher level), which is why SAS at step 0 differs between
    vocabularies. It is not a bound: a trained head can score below it.

    About half the words have tied candidates. ``ties="first"`` breaks ties as :func:`predicted_parents` does
    exact ones (the first index: ``head`` then predicts word 0, or word 1 for word 0); ``ties="random"`` gives
    the expected UAS with ties broken uniformly at random, closer to a real near-uniform head, whose attention
    has no exact ties. With ``to="mean"`` (:func:`word_attention`) every other word ties in both directions.
    """
    if ties not in ("first", "random"):
        raise ValueError(f"parameter ties={ties!r}: must be 'first' or 'random'")
    check_to_word(to)
    right = {"dep": 0.0, "head": 0.0}
    n = 0
    for p2w, heads in zip(enc.p2w, enc.heads):
        W = len(heads)
        if W < 2:
            continue
        pieces = np.bincount(p2w[p2w >= 0], minlength=W) if to == "sum" else np.ones(W)  # "mean": all tie
        for i, h in enumerate(heads):
            if h < 0:
                continue
            others = np.delete(np.arange(W), i)
            best = others[pieces[others] == pieces[others].max()]  # the tied candidates, in word order
            if ties == "first":
                right["dep"] += best[0] == h
                right["head"] += others[0] == h
            else:
                right["dep"] += (h in best) / len(best)
                right["head"] += 1 / len(others)  # the gold parent is always among the other words
            n += 1
    return {k: v / n if n else float("nan") for k, v in right.items()}


@torch.no_grad()
def chunk_attentions(model, enc: EncodedTreebank, max_tokens: int = 4096,
                     dtype=torch.float32) -> Iterator[tuple[Batch, torch.Tensor]]:
    """``(batch, attn)`` for every chunk of :func:`batches`; ``attn``: (L, B, H, T, T) attention weights.

    The model runs in eval mode with eager attention meanwhile; both are restored afterwards.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with attention_weights(model):
            for batch in batches(enc, max_tokens, device):
                out = model.bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_attentions=True)
                yield batch, torch.stack(out.attentions).to(dtype)
    finally:
        model.train(was_training)


@torch.no_grad()
def count_uas(model, enc: EncodedTreebank, max_tokens: int = 4096, dtype=torch.float32, to: str = "sum") -> Counts:
    """Forward every chunk with attention weights and accumulate :class:`Counts` (``to``: see :func:`word_attention`)."""
    check_to_word(to)  # before the model runs
    total = None
    for batch, attn in chunk_attentions(model, enc, max_tokens, dtype):
        c = score_attention(attn, batch, len(enc.relations), to)
        total = c if total is None else total.__iadd__(c)
    return total


def attention_spread(attn: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """How far each head's attention is from uniform, summed over the query rows of a chunk.

    ``attn`` (L, B, H, T, T) attention weights, ``attention_mask`` (B, T) 1 on real pieces (specials included: the
    model attends to them). For a query row with n real keys, ``log p_j = z_j - logsumexp(z)``, so the standard
    deviation of ``log p`` over the keys is that of the pre-softmax logits ``z``: the *logit spread* (0 for uniform
    attention). The *entropy deficit* is ``1 - H(p) / log n`` (0: uniform, 1: all mass on one key).
    A sentence of one piece has nothing to spread over: both are 0 there; an all-padding row adds nothing.
    Returns ``(spread_sum, deficit_sum, rows)``: the first two (L, H), summed over the B x T real query rows; ``rows``
    their number (a scalar tensor).
    """
    m = attention_mask.to(attn.dtype)  # (B, T)
    keys = m[None, :, None, None, :]  # real keys
    n = m.sum(-1)[None, :, None, None].clamp(min=1)  # (1, B, 1, 1); padding-only rows are masked out below
    logp = torch.where(keys > 0, attn.clamp_min(torch.finfo(attn.dtype).tiny).log(), torch.zeros_like(attn))
    mean = logp.sum(-1) / n
    spread = (((logp - mean[..., None]) ** 2 * keys).sum(-1) / n).sqrt()  # (L, B, H, T)
    entropy = -(attn * logp * keys).sum(-1)
    deficit = torch.where(n > 1, 1 - entropy / n.clamp(min=2).log(), torch.zeros_like(entropy))
    rows = m[None, :, None, :]  # real queries
    return (spread * rows).sum((1, 3)), (deficit * rows).sum((1, 3)), m.sum()


def counts_table(c: Counts, relations: Sequence[str]) -> pd.DataFrame:
    """Tidy table: one row per (layer, head, direction, relation)."""
    names = ["all", "all+root", *relations]
    L, H, D, K = c.correct.shape
    li, hi, di, ki = np.meshgrid(np.arange(L), np.arange(H), np.arange(D), np.arange(K), indexing="ij")
    n = c.n.cpu().numpy().ravel()
    corr = c.correct.cpu().numpy().ravel()
    soft = c.soft.cpu().numpy().ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(dict(
            layer=li.ravel(), head=hi.ravel(), direction=np.array(DIRECTIONS)[di.ravel()],
            relation=np.array(names, dtype=object)[ki.ravel()], n=n.astype(int), correct=np.rint(corr).astype(int),
            uas=corr / n, soft=soft / n,
        ))


def score_uas(model, enc: EncodedTreebank, max_tokens: int = 4096, baselines: bool = True,
              to: str = "sum") -> pd.DataFrame:
    """UAS of every (layer, head, direction) over all words and per relation, plus offset baselines (``to``: how
    attention to a word is read, :func:`word_attention`; the SAS scalar's is ``"sum"``)."""
    df = counts_table(count_uas(model, enc, max_tokens, to=to), enc.relations)
    return pd.concat([df, offset_baselines(enc)], ignore_index=True) if baselines else df


def summarize(df: pd.DataFrame, relations: Sequence[str] = ("nsubj", "obj", "det", "amod", "case", "advmod")) -> dict:
    """Flat dict for a metrics log: the SAS scalar and friends.

    ``sas_uas``: best (layer, head, direction) UAS over all non-root words (the figures' SAS scalar);
    ``sas_uas_root``: that head's UAS with root words counted; ``sas_soft``: best soft score;
    ``offset_best``: best fixed-offset baseline; ``uas/<rel>`` and ``offset/<rel>``: best head and
    best offset per relation.
    """
    heads = df[df.layer >= 0]
    base = df[df.layer == -1]  # plain offsets (edge-rule rows, if any, are layer -2)
    key = ["layer", "head", "direction"]
    allw = heads[heads.relation == "all"].set_index(key)
    best = allw.uas.idxmax()
    root = heads[heads.relation == "all+root"].set_index(key).uas
    out = {
        "sas_uas": float(allw.uas.max()),
        "sas_uas_root": float(root.loc[best]),
        "sas_head": "L{}H{}-{}".format(*best),
        "sas_soft": float(allw.soft.max()),
        "offset_best": float(base[base.relation == "all"].uas.max()) if len(base) else np.nan,
    }
    for r in relations:
        hr, br = heads[heads.relation == r], base[base.relation == r]
        if len(hr) and hr.n.iloc[0] > 0:
            out[f"uas/{r}"] = float(hr.uas.max())
            if len(br):
                out[f"offset/{r}"] = float(br.uas.max())
    return out


def offset_counts(attn: torch.Tensor, batch: Batch, max_offset: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each head's predicted parents lie, relative to the word: counts for one chunk.

    ``attn``: (L, B, H, T, T). Over non-root words i with a prediction p(i) (:func:`predicted_parents`),
    bins the offset ``p(i) - i`` clipped to ``[-(max_offset+1), max_offset+1]`` (the end bins hold
    everything farther). Returns ``(n, correct)``, each (L, H, 2 directions, 2 * max_offset + 3): the
    number of predictions in each offset bin, and how many of them are the gold parent.
    """
    aw = word_attention(attn, batch.piece_word)
    L, B, H, W, _ = aw.shape
    pred = torch.stack(predicted_parents(aw), dim=2)  # (L, B, 2, H, W)
    i = torch.arange(W, device=aw.device)
    k = max_offset + 1
    off = (pred - i).clamp(-k, k) + k  # bin index 0..2k
    valid = (pred >= 0) & (batch.heads >= 0)[None, :, None, None, :]
    hit = valid & (pred == batch.heads.clamp(min=0)[None, :, None, None, :])
    onehot = torch.nn.functional.one_hot(off, 2 * k + 1).to(aw.dtype)  # (L, B, 2, H, W, bins)
    n = torch.einsum("lbdhwk,lbdhw->lhdk", onehot, valid.to(aw.dtype))
    correct = torch.einsum("lbdhwk,lbdhw->lhdk", onehot, hit.to(aw.dtype))
    return n, correct


@torch.no_grad()
def parent_offsets(model, enc: EncodedTreebank, max_offset: int = 5, max_tokens: int = 4096) -> pd.DataFrame:
    """Offset profile of every head: is it positional, or does it point at parents wherever they are?

    One row per (layer, head, direction, offset) with ``n`` predictions at that offset (non-root words;
    the end bins ``±(max_offset+1)`` hold everything farther) and ``correct`` (those that are the gold
    parent). A fixed-offset head puts (nearly) all its predictions in one bin; a syntactic head spreads
    them over the offsets where parents are. See :func:`positional_share`.
    """
    n = correct = None
    for batch, attn in chunk_attentions(model, enc, max_tokens):
        a, b = offset_counts(attn, batch, max_offset)
        n, correct = (a, b) if n is None else (n + a, correct + b)
    return offset_table(n, correct)


def offset_table(n: torch.Tensor, correct: torch.Tensor) -> pd.DataFrame:
    """Tidy table of :func:`offset_counts` (summed over chunks), as returned by :func:`parent_offsets`."""
    L, H, D, K = n.shape
    max_offset = (K - 3) // 2
    li, hi, di, ki = np.meshgrid(np.arange(L), np.arange(H), np.arange(D), np.arange(K), indexing="ij")
    return pd.DataFrame(dict(
        layer=li.ravel(), head=hi.ravel(), direction=np.array(DIRECTIONS)[di.ravel()],
        offset=ki.ravel() - (max_offset + 1), n=np.rint(n.cpu().numpy().ravel()).astype(int),
        correct=np.rint(correct.cpu().numpy().ravel()).astype(int)))


def positional_share(profile: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, head, direction) of a :func:`parent_offsets` table: ``uas`` (correct / predictions),
    ``modal_offset`` (its most frequent offset), ``share`` (fraction of predictions there: 1 = purely
    positional) and ``uas_off_mode`` (correct predictions *away* from the modal offset / all
    predictions: the part of the head's score that its best offset alone would not give)."""
    key = ["layer", "head", "direction"]
    g = profile.groupby(key)
    total, hits = g.n.sum(), g.correct.sum()
    mode = profile.loc[profile.groupby(key).n.idxmax()].set_index(key)
    out = pd.DataFrame(dict(uas=hits / total, modal_offset=mode.offset, share=mode.n / total,
                            uas_off_mode=(hits - mode.correct) / total))
    return out.reset_index()


@torch.no_grad()
def word_correctness(model, enc: EncodedTreebank, max_tokens: int = 4096) -> dict[str, np.ndarray]:
    """Per non-root word, whether each head gets its parent right, with what a positional rule needs.

    Returns arrays over the N non-root words of ``enc`` (in chunk order, aligned with each other):
    ``heads`` (L, H, 2 directions, N) bool -- the :func:`predicted_parents` rule; ``gold`` (N,) the parent;
    ``position`` (N,) the word's index i and ``length`` (N,) its sentence's word count (for
    :func:`offset_correct`); ``relation`` (N,) index into ``enc.relations`` (-1 none); ``sentence`` (N,)
    index into ``enc``. Summing ``heads`` over N gives :func:`count_uas`'s "all" counts.
    """
    cols = {k: [] for k in ("heads", "gold", "position", "length", "relation", "sentence")}
    for batch, attn in chunk_attentions(model, enc, max_tokens):
        aw = word_attention(attn, batch.piece_word)
        pred = torch.stack(predicted_parents(aw), dim=2)  # (L, B, 2, H, W)
        gold = batch.heads  # (B, W): -2 padding, -1 root
        keep = (gold >= 0).cpu().numpy()
        ok = (pred == gold[None, :, None, None, :]).permute(0, 3, 2, 1, 4).cpu().numpy()  # (L, H, 2, B, W)
        B, W = keep.shape
        cols["heads"].append(ok[..., keep])
        cols["gold"].append(gold.cpu().numpy()[keep])
        cols["position"].append(np.broadcast_to(np.arange(W), (B, W))[keep])
        cols["length"].append(np.broadcast_to((gold >= -1).sum(1).cpu().numpy()[:, None], (B, W))[keep])
        cols["relation"].append(batch.rels.cpu().numpy()[keep])
        cols["sentence"].append(np.broadcast_to(batch.index[:, None], (B, W))[keep])
    return {k: np.concatenate(v, -1) for k, v in cols.items()}


def offset_correct(position: np.ndarray, length: np.ndarray, gold: np.ndarray, k: int,
                   mirror: bool = False) -> np.ndarray:
    """Whether "parent = i + k" is right for each word (arrays as :func:`word_correctness` returns).

    ``mirror=True``: where i + k falls outside the sentence, predict i - k instead. A baseline modelled on a head
    that attends by position: such a head must attend somewhere at the sentence's edge (in the ``dep`` direction
    a next-word head's last word usually picks the word before it), while the plain offset predicts nothing there.
    """
    pred = position + k
    if mirror:
        pred = np.where((pred < 0) | (pred >= length), position - k, pred)
    return (pred == gold) & (pred >= 0) & (pred < length)


def first_n(enc: EncodedTreebank, n: int | None) -> EncodedTreebank:
    """The first ``n`` encoded sentences (those that fit), keeping the skip counts and notes."""
    if n is None or n >= len(enc):
        return enc
    return EncodedTreebank(enc.ids[:n], enc.p2w[:n], enc.heads[:n], enc.rels[:n], enc.relations,
                           enc.skipped_too_long, enc.unk_words, enc.notes)


def make_sas_callback(
    tokenizer, max_len: int, treebank: str = "ewt-dev", n_sentences: int = 300,
    data_dir=None, max_tokens: int = 4096,
) -> Callable[[object, int], dict]:
    """Metric callback for the training loop: ``cb(model, step) -> summarize(score_uas(...))``, plus
    ``offset_edge_best``: the best offset with the edge rule (:func:`offset_baselines`, ``mirror=True``).

    Scores the first ``n_sentences`` sentences of ``treebank`` that fit in ``max_len`` pieces (the
    model's positions; the number skipped to get there is in ``cb.encoded.notes``). The treebank is
    read and tokenized once, here.
    """
    enc = first_n(encode_treebank(load_treebank(treebank, data_dir), tokenizer, max_len), n_sentences)
    base = offset_baselines(enc)
    edge = offset_baselines(enc, mirror=True)
    edge_best = float(edge[edge.relation == "all"].uas.max())

    def sas_callback(model, step: int) -> dict:
        df = pd.concat([counts_table(count_uas(model, enc, max_tokens), enc.relations), base], ignore_index=True)
        return {**summarize(df), "offset_edge_best": edge_best}

    sas_callback.encoded = enc  # for inspection (notes on skipped sentences)
    return sas_callback


# --------------------------------------------------------------------------- single sentences (figures)

def select(enc: EncodedTreebank, indices: Sequence[int]) -> EncodedTreebank:
    """The encoded sentences at ``indices`` (in that order), keeping the skip counts and notes."""
    idx = [int(s) for s in indices]
    bad = [s for s in idx if not 0 <= s < len(enc)]
    if bad:
        raise IndexError(f"sentence indices {bad} out of range 0..{len(enc) - 1}")
    return EncodedTreebank([enc.ids[s] for s in idx], [enc.p2w[s] for s in idx], [enc.heads[s] for s in idx],
                           [enc.rels[s] for s in idx], enc.relations, enc.skipped_too_long, enc.unk_words, enc.notes)


ARC_COLUMNS = ("sentence", "layer", "head", "direction", "i", "word", "relation", "gold", "j", "weight",
               "gold_weight", "is_gold")


@torch.no_grad()
def attention_arcs(model, enc: EncodedTreebank, sentence_indices: Sequence[int], words: Sequence,
                   max_tokens: int = 4096) -> pd.DataFrame:
    """Every head's strongest attention arc for each word of a few sentences (the paper's Figure 1).

    ``sentence_indices``: indices into ``enc``; ``words``: for each of them, in the same order, the
    sentence's words (a tuple of strings, or the :class:`ParsedSentence` itself) -- the labels, which
    ``enc`` does not keep. Their number must match the encoded sentence's (catches misalignment when
    :func:`encode_treebank` skipped long sentences).

    One row per (sentence, layer, head, direction, word i): ``j`` = the predicted parent by the rule
    of :func:`predicted_parents` (``dep``: the word i attends to most; ``head``: the word that attends
    to i most; -1 = none), ``weight`` = that word-level attention (``dep``: A[i, j]; ``head``: A[j, i]),
    ``gold`` = i's gold parent (-1 = root), ``gold_weight`` = the attention on the gold arc (NaN for
    root words), ``is_gold`` = j == gold. ``sentence`` is the index into ``enc``.
    """
    idx = [int(s) for s in sentence_indices]
    labels = [tuple(getattr(w, "words", w)) for w in words]
    if len(labels) != len(idx):
        raise ValueError(f"{len(idx)} sentence indices but {len(labels)} word lists")
    if len(set(idx)) != len(idx):
        raise ValueError(f"repeated sentence indices in {idx}")
    sub = select(enc, idx)
    for s, w, heads in zip(idx, labels, sub.heads):
        if len(w) != len(heads):
            raise ValueError(f"sentence {s}: {len(w)} words given, the encoded sentence has {len(heads)} "
                             "(are `words` aligned with the encoded sentences?)")
    frames = []
    for batch, attn in chunk_attentions(model, sub, max_tokens):
        aw = word_attention(attn, batch.piece_word)  # (L, B, H, W, W)
        pred = predicted_parents(aw)  # zeroes the diagonal; off-diagonal weights are unchanged
        L, _, H, _, _ = aw.shape
        for b, k in enumerate(batch.index):
            W = len(sub.heads[k])
            a = aw[:, b, :, :W, :W].cpu().numpy()  # (L, H, W, W)
            gold = sub.heads[k]
            li, hi, ii = np.meshgrid(np.arange(L), np.arange(H), np.arange(W), indexing="ij")
            g = np.broadcast_to(gold, (L, H, W))
            for d, (direction, p) in enumerate(zip(DIRECTIONS, pred)):
                m = a if d == 0 else a.swapaxes(-1, -2)  # row i: dep = what i attends to; head = who attends to i
                j = p[:, b, :, :W].cpu().numpy()
                weight = np.take_along_axis(m, np.maximum(j, 0)[..., None], -1)[..., 0]
                gw = np.take_along_axis(m, np.maximum(g, 0)[..., None], -1)[..., 0]
                frames.append(pd.DataFrame(dict(
                    sentence=idx[k], layer=li.ravel(), head=hi.ravel(), direction=direction, i=ii.ravel(),
                    word=np.array(labels[k], dtype=object)[ii.ravel()],
                    relation=np.array([*enc.relations, "_"], dtype=object)[sub.rels[k]][ii.ravel()],
                    gold=g.ravel(), j=j.ravel(), weight=np.where(j >= 0, weight, 0.0).ravel(),
                    gold_weight=np.where(g >= 0, gw, np.nan).ravel(), is_gold=(j == g).ravel() & (g.ravel() >= 0),
                )))
    df = pd.concat(frames, ignore_index=True)
    order = {s: n for n, s in enumerate(idx)}
    df = df.sort_values(["sentence", "layer", "head", "direction", "i"], key=lambda c: c.map(order) if c.name == "sentence" else c)
    return df.reset_index(drop=True)[list(ARC_COLUMNS)].astype(
        dict(layer="int16", head="int16", i="int16", gold="int16", j="int16", weight="float32", gold_weight="float32"))
