"""BLiMP minimal pairs, scored by pseudo-log-likelihood (PLL), batched across sentences.

BLiMP (Warstadt et al. 2020): 67 paradigms x 1,000 pairs (``sentence_good``, ``sentence_bad``). A pair is
correct when the model gives the good sentence the higher score; the paper's "Mean BLiMP Accuracy" is the
mean over paradigms of per-paradigm accuracy.

PLL (Salazar et al. 2020), for a sentence tokenized into pieces ``w_1..w_n`` (special tokens excluded)::

    PLL(W) = sum_t log p(w_t | W with w_t replaced by [MASK])            variant="original"
    PLL(W) = sum_t log p(w_t | W with w_t and the pieces of the same
                           word to the right of w_t replaced by [MASK])  variant="within_word_l2r"

(the second is Kauf & Ivanova 2023's fix for multi-piece words, which the original over-scores because the
other pieces of the word give the masked one away). Scores are natural-log sums (nats), not length-normalised.

Batching: every sentence of length L (with [CLS]/[SEP]) gives n = L - 2 masked copies, one per scored piece.
The copies of all (de-duplicated) sentences are sorted by length and cut into sub-batches of shape
(rows, padded length) with rows x padded length <= ``max_tokens_per_batch``, so one long sentence is split
rather than blowing memory. For a BERT MLM the encoder runs on the sub-batch (rows, T, H) and the MLM head
only on the one masked row per copy (rows, H) -> (rows, V): the full (rows, T, V) logits are never formed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import paths

BLIMP_DIR = "blimp/data"
VARIANTS = ("original", "within_word_l2r")
_FIELDS = ("sentence_good", "sentence_bad", "field", "linguistics_term", "UID", "pairID")


class BlimpError(ValueError):
    """A malformed BLiMP line; the message names ``file:line``."""


@dataclass(frozen=True)
class BlimpPair:
    """One BLiMP minimal pair: the grammatical and the ungrammatical sentence, and where it sits in BLiMP's taxonomy."""

    good: str
    bad: str
    uid: str  # paradigm, e.g. "adjunct_island"
    term: str  # linguistics_term (12 phenomena), e.g. "island_effects"
    field: str  # syntax / morphology / semantics / syntax_semantics
    pair_id: str


# ----------------------------------------------------------------------------- reading


def blimp_paradigms(data_dir: str | Path | None = None) -> list[str]:
    """The paradigm UIDs present in the data directory (67 for the full BLiMP), sorted."""
    return sorted(p.stem for p in (paths.data_dir(data_dir) / BLIMP_DIR).glob("*.jsonl"))


def read_blimp_jsonl(path: str | Path) -> list[BlimpPair]:
    """All pairs of one paradigm file; any bad line raises :class:`BlimpError` naming ``file:line``."""
    path = Path(path)
    out = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise BlimpError(f"{where}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise BlimpError(f"{where}: bad JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise BlimpError(f"{where}: expected a JSON object")
            missing = [k for k in _FIELDS if k not in rec]
            if missing:
                raise BlimpError(f"{where}: missing field(s) {', '.join(missing)}")
            for k in ("sentence_good", "sentence_bad"):
                if not isinstance(rec[k], str) or not rec[k].strip():
                    raise BlimpError(f"{where}: empty or non-string {k}")
            out.append(BlimpPair(rec["sentence_good"], rec["sentence_bad"], str(rec["UID"]),
                                 str(rec["linguistics_term"]), str(rec["field"]), str(rec["pairID"])))
    return out


def load_blimp(
    data_dir: str | Path | None = None,
    paradigms: Sequence[str] | None = None,
    n_per_paradigm: int | None = None,
    seed: int = 0,
) -> list[BlimpPair]:
    """Pairs of the given paradigms (default: all), optionally a fixed sample of ``n_per_paradigm`` each.

    The sample depends only on (seed, paradigm UID), so it is the same on every call and does not change
    when other paradigms are added or dropped. Pairs keep file order.
    """
    out = []
    for uid in paradigms if paradigms is not None else blimp_paradigms(data_dir):
        pairs = read_blimp_jsonl(paths.data_file(f"{BLIMP_DIR}/{uid}.jsonl", data_dir))
        if n_per_paradigm is not None and n_per_paradigm < len(pairs):
            keep = random.Random(f"{seed}:{uid}").sample(range(len(pairs)), n_per_paradigm)  # str seed: stable
            pairs = [pairs[i] for i in sorted(keep)]
        out.extend(pairs)
    return out


# ----------------------------------------------------------------------------- PLL scoring


def _plan_batches(lengths: np.ndarray, cap: int) -> list[tuple[int, int]]:
    """Cut copies (sorted by length, ascending) into [start, end) runs with rows x max length <= cap."""
    out, s, n = [], 0, len(lengths)
    while s < n:
        k = np.arange(1, min(n - s, max(1, cap // int(lengths[s]))) + 1)
        ok = k * lengths[s + k - 1] <= cap  # monotone in k since lengths ascend
        e = s + max(1, int(ok.sum()))  # at least one row, even if a single copy exceeds the cap
        out.append((s, e))
        s = e
    return out


@torch.no_grad()
def pseudo_log_likelihoods(
    model,
    tokenizer,
    sentences: Sequence[str],
    variant: str = "original",
    max_tokens_per_batch: int = 4096,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """PLL of each sentence in nats (see the module docstring); returns float64 array of shape (len(sentences),).

    ``model``: a masked LM (``BertForMaskedLM`` gets the fast path: encoder on all positions, MLM head on the
    masked ones only; any other model returning ``.logits`` works, at full-vocabulary cost).
    ``tokenizer``: a fast (Rust) tokenizer; ``word_ids()`` defines words for ``within_word_l2r``.
    ``max_tokens_per_batch``: cap on rows x padded length of one forward pass.
    ``device``: where to run (default: the model's device). The model is put in eval mode and its
    train/eval mode restored afterwards.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("a fast tokenizer is needed (word_ids() for within_word_l2r)")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    uniq = list(dict.fromkeys(sentences))  # BLiMP repeats sentences: score each once
    if not uniq:
        return np.zeros(0)

    # Tokenize once; pad everything to (U, Lmax) so a sub-batch is one fancy-index away.
    enc = tokenizer(uniq, add_special_tokens=True, return_special_tokens_mask=True)
    lens = np.array([len(x) for x in enc["input_ids"]])
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_pos is not None and lens.max() > max_pos:
        raise ValueError(f"a sentence has {lens.max()} tokens > max_position_embeddings={max_pos}")
    U, Lmax = len(uniq), int(lens.max())
    ids = torch.full((U, Lmax), tokenizer.pad_token_id, dtype=torch.long)
    wid = torch.full((U, Lmax), -1, dtype=torch.long)  # word index per piece, -1 for special/pad
    sent, pos = [], []  # one masked copy per scored piece: (sentence index, masked position)
    for i in range(U):
        ids[i, : lens[i]] = torch.tensor(enc["input_ids"][i])
        w = enc.word_ids(i)
        wid[i, : lens[i]] = torch.tensor([-1 if x is None else x for x in w])
        p = [t for t, s in enumerate(enc["special_tokens_mask"][i]) if not s]
        sent += [i] * len(p)
        pos += p
    sent, pos = np.array(sent, dtype=np.int64), np.array(pos, dtype=np.int64)
    order = np.lexsort((pos, sent, lens[sent]))  # by length: minimal padding inside a sub-batch
    sent, pos = sent[order], pos[order]
    batches = _plan_batches(lens[sent], max_tokens_per_batch)

    ids, wid = ids.to(device), wid.to(device)
    sent_t, pos_t = torch.from_numpy(sent).to(device), torch.from_numpy(pos).to(device)
    lens_t = torch.from_numpy(lens).to(device)
    fast = hasattr(model, "bert") and hasattr(model, "cls")
    out = torch.empty(len(sent), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        it = batches
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(batches, desc=f"PLL ({variant})", unit="batch")
        for s, e in it:
            si, pi = sent_t[s:e], pos_t[s:e]  # (B,), (B,)
            T = int(lens[sent[e - 1]])  # padded length of this sub-batch (ascending sort: last is longest)
            x = ids[si, :T]  # (B, T)
            true = x.gather(1, pi[:, None]).squeeze(1)  # (B,) token to predict
            j = torch.arange(T, device=device)[None, :]  # (1, T)
            if variant == "original":
                m = j == pi[:, None]
            else:  # the piece itself and later pieces of the same word
                w = wid[si, :T]
                m = (j >= pi[:, None]) & (w == w.gather(1, pi[:, None]))
            x = x.masked_fill(m, tokenizer.mask_token_id)
            att = (j < lens_t[si][:, None]).long()  # (B, T) 1 = real token
            rows = torch.arange(e - s, device=device)
            if fast:
                h = model.bert(input_ids=x, attention_mask=att).last_hidden_state  # (B, T, H)
                logits = model.cls(h[rows, pi])  # (B, V): the head on masked positions only
            else:
                logits = model(input_ids=x, attention_mask=att).logits[rows, pi]  # (B, V)
            lp = torch.log_softmax(logits.float(), dim=-1).gather(1, true[:, None]).squeeze(1)
            out[s:e] = lp.double()
    finally:
        model.train(was_training)

    totals = np.zeros(U)
    np.add.at(totals, sent, out.cpu().numpy())  # sum over pieces per sentence
    index = {s: i for i, s in enumerate(uniq)}
    return totals[[index[s] for s in sentences]]


# ----------------------------------------------------------------------------- BLiMP accuracy


def score_blimp(model, tokenizer, pairs: Sequence[BlimpPair], variant: str = "original", **kw) -> pd.DataFrame:
    """One row per pair: uid, term, field, pair_id, pll_good, pll_bad, correct (pll_good > pll_bad; ties
    count as wrong). Good and bad sentences of all pairs go through one batched, de-duplicated PLL call;
    ``kw`` goes to :func:`pseudo_log_likelihoods`."""
    n = len(pairs)
    pll = pseudo_log_likelihoods(model, tokenizer, [p.good for p in pairs] + [p.bad for p in pairs], variant, **kw)
    df = pd.DataFrame({
        "uid": [p.uid for p in pairs], "term": [p.term for p in pairs], "field": [p.field for p in pairs],
        "pair_id": [p.pair_id for p in pairs], "pll_good": pll[:n], "pll_bad": pll[n:],
    })
    df["correct"] = df["pll_good"] > df["pll_bad"]
    return df


def blimp_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-paradigm table: uid, term, field, n, accuracy, se (binomial sqrt(acc (1 - acc) / n))."""
    t = df.groupby(["uid", "term", "field"], sort=True)["correct"].agg(n="size", accuracy="mean").reset_index()
    t["se"] = np.sqrt(t["accuracy"] * (1 - t["accuracy"]) / t["n"])
    return t


def summarize_blimp(df: pd.DataFrame) -> dict[str, float]:
    """Flat metrics: ``blimp_mean`` (mean over paradigms of accuracy, the paper's Mean BLiMP Accuracy),
    ``blimp_mean_se`` (its binomial standard error, sqrt(sum_p acc_p (1 - acc_p) / n_p) / P, i.e. the
    sampling error from scoring n_p pairs per paradigm), ``blimp_n_pairs``, and ``blimp_term/<term>``
    (mean over that term's paradigms)."""
    t = blimp_table(df)
    out = {
        "blimp_mean": float(t["accuracy"].mean()),
        "blimp_mean_se": float(np.sqrt((t["se"] ** 2).sum()) / len(t)),
        "blimp_n_pairs": int(t["n"].sum()),
    }
    for term, acc in t.groupby("term")["accuracy"].mean().items():
        out[f"blimp_term/{term}"] = float(acc)
    return out


def make_blimp_callback(
    tokenizer,
    data_dir: str | Path | None = None,
    n_per_paradigm: int | None = 20,
    variant: str = "original",
    seed: int = 0,
    max_len: int | None = None,
    **kw,
) -> Callable[[torch.nn.Module, int], dict[str, float]]:
    """A metric callback ``cb(model, step) -> summarize_blimp(...)`` for the training loop.

    Pairs are loaded (and sampled) once, here; with ``max_len`` (the model's positions) pairs with a
    sentence longer than that are skipped and the count printed; each call scores them on the model's device and restores
    the model's train/eval mode. ``kw`` goes to :func:`pseudo_log_likelihoods` (e.g. max_tokens_per_batch).
    """
    pairs = load_blimp(data_dir, n_per_paradigm=n_per_paradigm, seed=seed)
    if max_len is not None:
        pairs, skipped = fitting_pairs(pairs, tokenizer, max_len)
        if skipped:
            print(f"BLiMP callback: skipped {skipped} of {skipped + len(pairs)} pairs longer than {max_len} pieces")

    def blimp_callback(model, step: int) -> dict[str, float]:
        was_training = model.training
        try:
            return summarize_blimp(score_blimp(model, tokenizer, pairs, variant=variant, **kw))
        finally:
            model.train(was_training)

    blimp_callback.pairs = pairs  # for inspection
    return blimp_callback


def fitting_pairs(pairs: Sequence[BlimpPair], tokenizer, max_len: int) -> tuple[list[BlimpPair], int]:
    """The pairs whose both sentences fit in ``max_len`` pieces (with [CLS]/[SEP]), and how many did not."""
    sents = [p.good for p in pairs] + [p.bad for p in pairs]
    lens = [len(x) for x in tokenizer(sents)["input_ids"]]
    n = len(pairs)
    keep = [p for k, p in enumerate(pairs) if lens[k] <= max_len and lens[n + k] <= max_len]
    return keep, n - len(keep)
