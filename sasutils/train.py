"""The training loop: BERT MLM + the syntactic regularizer, with metric callbacks and checkpoints.

Read it top to bottom in :func:`train`. The loop knows no metric: ``callbacks`` are
``(every, fn)`` pairs where ``fn(model, step) -> dict`` returns a flat dict that is merged into the
metrics row of that step (``sasutils.sas.make_sas_callback``, ``sasutils.blimp.make_blimp_callback``).

Run directory layout::

    run_dir/config.json          the full configuration (a resumed run must match it)
    run_dir/tokenizer/           the WordPiece tokenizer (AutoTokenizer.from_pretrained)
    run_dir/metrics.jsonl        one JSON object per evaluation step (tidy: pandas.read_json(lines=True))
    run_dir/checkpoints/step_0000100/   save_pretrained folders + manifest.json
    run_dir/state.pt             last training state (model, optimizer, scheduler, step, wall time)

Branching: SAS-(k) is SAS- until step k, so it can start from SAS-'s state at step k instead of step 0
(:func:`fork`; ``train(..., stop_at=k)`` pauses a run there). ``sasutils.sweep`` does this for a plan
that holds both, saving k steps per SAS-(k) run; the result is the same run, bit for bit on CPU.

Determinism: the batch and the MLM mask of step s, and the dropout RNG, are derived from
``(seed, s)`` alone, so a run resumed from ``state.pt`` reproduces the uninterrupted run exactly on CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import transformers
from tqdm.auto import tqdm

from . import model as model_lib
from .corpus import SOURCES, CorpusData, load_corpus
from .regularizer import arc_matrix, syntactic_regularizer
from .tokenizer import save_atomic

Callback = Callable[[torch.nn.Module, int], dict]

# Options added after runs were published: at these values they are left out of a run's identity, so
# earlier runs keep their names and still resume; any other value is part of the identity as usual.
LATER_DEFAULTS = dict(lr_schedule="linear", init_range=0.02, reg_attention="all", pos_init="normal",
                      ln_placement="post", bias_init="zero", qk_init=1.0)
DEFAULTS = dict(
    preset="cpu-tiny", seed=0, lam=0.0, suppress_steps=0, reg_reduction="mean",
    eval_every=250, eval_batches=8, checkpoint_every=500, checkpoint_log_steps=(10, 20, 50, 100, 200),
    data_dir=None, threads=None, device="auto", micro_batch=None, **LATER_DEFAULTS,
)
LR_SCHEDULES = ("linear", "constant")
# "normal": BERT's N(0, init_range) position table; "sinusoidal": the same scale, relative-position structure;
# "zero": no position signal at init (layer 0 starts permutation-equivariant; position must be learned)
POS_INITS = model_lib.POS_INITS
# the MLM head's output bias at init: "zero" (BERT's) or "unigram" (log frequencies of the training pieces)
BIAS_INITS = ("zero", "unigram")
# "all": the paper's term, on attention as it is; "words": rows renormalised over the other word pieces
REG_ATTENTION = ("all", "words")
# Where and how a run executes, not what it computes: ignored when naming runs and matching a resume.
EXECUTION_KEYS = ("data_dir", "threads", "device", "micro_batch")


_STOP = threading.Event()


def request_stop(*_) -> None:
    """Ask a running :func:`train` to save ``state.pt`` at its next step and return (usable as a signal
    handler: ``sasutils.sweep`` workers call it on SIGTERM, so a deadline loses no finished step)."""
    _STOP.set()


def stop_requested() -> bool:
    """Has :func:`request_stop` been called in this process? (:func:`train` then saves its state and returns.)"""
    return _STOP.is_set()


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss, mismatched resume); the message says where."""


# --------------------------------------------------------------------------- configuration

def make_config(preset: str = "cpu-tiny", **params) -> dict:
    """The full run configuration: preset values, then loop defaults, then ``params``; validated.

    A ``None`` in ``params`` means "the preset's / the default value" (as notebooks pass them).

    ``lam``: regularizer weight (> 0 SAS-, < 0 SAS+, 0 off). ``suppress_steps`` = k: the term is on
    for steps < k and off from k on; -1 = the whole run; 0 = never (Base).
    ``reg_attention``: ``"all"`` (the paper's term) or ``"words"`` (attention rows renormalised over the
    other word pieces first; see :mod:`sasutils.regularizer`).
    ``pos_init``: ``"normal"`` (BERT's), ``"sinusoidal"`` (the learned position table starts as a scaled
    sinusoid; see :func:`sasutils.model.sinusoidal_positions`) or ``"zero"`` (it starts at 0).
    ``bias_init``: ``"zero"`` (BERT's) or ``"unigram"`` (the output bias starts at the log frequencies of the
    training pieces, so training starts at the unigram loss; see :func:`sasutils.model.set_unigram_bias`).
    ``ln_placement``: ``"post"`` (BERT's) or ``"pre"`` (layer norm before each sub-layer; see
    :func:`sasutils.model.build_model`).
    ``qk_init``: factor on the query and key weights at initialisation (1 = BERT's; a small factor starts every
    head at near-uniform attention; see :func:`sasutils.model.scale_query_key`).
    """
    preset_keys = set(model_lib.preset(preset))
    cfg = model_lib.preset(preset, **{k: v for k, v in params.items() if k in preset_keys})
    for k, v in DEFAULTS.items():
        cfg[k] = v if params.get(k) is None else params[k]  # None means "the default"
    cfg["preset"] = preset
    unknown = set(params) - preset_keys - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}")
    validate_config(cfg)
    return cfg


def validate_config(cfg: dict) -> None:
    """Check types and ranges before any compute; errors name the parameter."""
    def need(cond: bool, name: str, what: str):
        if not cond:
            raise ValueError(f"parameter {name}={cfg.get(name)!r}: {what}")

    def is_int(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    def is_num(x):
        return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)

    for k in ("steps", "batch_size", "seq_len", "vocab_size", "eval_every", "checkpoint_every", "warmup",
              "eval_batches", "seed", *model_lib.ARCH_KEYS):
        need(is_int(cfg[k]), k, "must be an integer")
    for k in ("lr", "lam", "mask_prob", "dropout", "weight_decay", "beta2"):
        need(is_num(cfg[k]), k, "must be a number")
    need(cfg["eval_batches"] >= 1, "eval_batches", "must be >= 1")
    need(cfg["seed"] >= 0, "seed", "must be >= 0 (numpy's seed sequences take no negative seed)")
    for k in ("seq_len", "vocab_size", *model_lib.ARCH_KEYS):
        need(cfg[k] >= 1, k, "must be >= 1")
    need(0 <= cfg["weight_decay"] < 1, "weight_decay", "must be in [0, 1)")
    need(0 < cfg["beta2"] < 1, "beta2", "must be in (0, 1)")
    need(all(is_int(x) for x in cfg["checkpoint_log_steps"]), "checkpoint_log_steps", "must be integers")
    need(cfg["corpus"] in SOURCES, "corpus", f"must be one of {SOURCES}")
    need(cfg["corpus_sentences"] is None or (is_int(cfg["corpus_sentences"]) and cfg["corpus_sentences"] >= 1),
         "corpus_sentences", "must be an integer >= 1 or None")
    need(cfg["steps"] >= 1, "steps", "must be >= 1")
    need(cfg["batch_size"] >= 1, "batch_size", "must be >= 1")
    need(0 <= cfg["warmup"] < cfg["steps"], "warmup", "must be in [0, steps)")
    need(isinstance(cfg["lr"], (int, float)) and 0 < cfg["lr"] < 1, "lr", "must be a number in (0, 1)")
    need(isinstance(cfg["lam"], (int, float)) and math.isfinite(cfg["lam"]), "lam", "must be a finite number")
    k = cfg["suppress_steps"]
    need(isinstance(k, (int, np.integer)) and not isinstance(k, bool), "suppress_steps", "must be an integer")
    need(k == -1 or 0 <= k <= cfg["steps"], "suppress_steps",
         f"must be -1 (whole run) or between 0 and steps={cfg['steps']}")
    need(cfg["reg_reduction"] in ("mean", "sum"), "reg_reduction", "must be 'mean' or 'sum'")
    need(cfg["reg_attention"] in REG_ATTENTION, "reg_attention", f"must be one of {REG_ATTENTION}")
    need(cfg["lr_schedule"] in LR_SCHEDULES, "lr_schedule", f"must be one of {LR_SCHEDULES}")
    need(is_num(cfg["init_range"]) and 0 < cfg["init_range"] < 1, "init_range", "must be a number in (0, 1)")
    need(cfg["pos_init"] in POS_INITS, "pos_init", f"must be one of {POS_INITS}")
    need(cfg["bias_init"] in BIAS_INITS, "bias_init", f"must be one of {BIAS_INITS}")
    need(is_num(cfg["qk_init"]) and 0 < cfg["qk_init"] <= 10, "qk_init", "must be a number in (0, 10]")
    need(cfg["ln_placement"] in model_lib.LN_PLACEMENTS, "ln_placement", f"must be one of {model_lib.LN_PLACEMENTS}")
    need(0 < cfg["mask_prob"] < 1, "mask_prob", "must be in (0, 1)")
    need(0 <= cfg["dropout"] < 1, "dropout", "must be in [0, 1)")
    need(cfg["hidden_size"] % cfg["num_attention_heads"] == 0, "hidden_size",
         f"must be divisible by num_attention_heads={cfg['num_attention_heads']}")
    need(cfg["eval_every"] >= 1 and cfg["checkpoint_every"] >= 1, "eval_every", "intervals must be >= 1")
    mb = cfg.get("micro_batch")
    need(mb is None or (isinstance(mb, (int, np.integer)) and not isinstance(mb, bool) and 1 <= mb <= cfg["batch_size"]),
         "micro_batch", "must be None or an integer in [1, batch_size]")
    dev = cfg.get("device", "auto")
    need(dev == "auto" or (isinstance(dev, str) and dev.split(":")[0] in ("cpu", "cuda", "mps")), "device",
         "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    th = cfg.get("threads")
    need(th is None or (is_int(th) and th >= 1), "threads", "must be None (torch's default) or an integer >= 1")
    if cfg.get("data_dir"):
        need(Path(cfg["data_dir"]).is_dir(), "data_dir", "directory does not exist")


def lam_at(cfg: dict, step: int) -> float:
    """The regularizer weight in force at ``step`` (suppress-then-release)."""
    k = cfg["suppress_steps"]
    return cfg["lam"] if (k == -1 or step < k) else 0.0


def lr_at(cfg: dict, step: int) -> float:
    """Linear warmup to ``lr``, then (``lr_schedule``) ``"linear"`` decay to 0 at ``steps`` (BERT's) or
    ``"constant"`` -- never dependent on ``suppress_steps``. The constant schedule is a control: a term
    released at step k meets the same learning rate as at the start."""
    w, n = cfg["warmup"], cfg["steps"]
    if step < w:
        return cfg["lr"] * (step + 1) / w
    if cfg.get("lr_schedule", "linear") == "constant":
        return cfg["lr"]
    return cfg["lr"] * max(0.0, (n - step) / max(1, n - w))


def checkpoint_steps(cfg: dict) -> list[int]:
    """Dense early (log-spaced ``checkpoint_log_steps``), then every ``checkpoint_every``, plus 0 and the end."""
    s = {0, cfg["steps"], *[x for x in cfg["checkpoint_log_steps"] if x < cfg["steps"]]}
    s |= set(range(cfg["checkpoint_every"], cfg["steps"], cfg["checkpoint_every"]))
    return sorted(s)


def identity(cfg: dict) -> dict:
    """The configuration as JSON values, without :data:`EXECUTION_KEYS` and without :data:`LATER_DEFAULTS`
    keys at their default values (what defines a run's results)."""
    return {k: v for k, v in json.loads(json.dumps(cfg, default=str)).items()
            if k not in EXECUTION_KEYS and not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}


def device_of(cfg: dict) -> torch.device:
    """``cfg["device"]``, with ``"auto"`` = CUDA if available, else CPU."""
    if cfg.get("device", "auto") == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg["device"])


def run_name(cfg: dict) -> str:
    """A run directory name from the parameters that distinguish runs."""
    k = cfg["suppress_steps"]
    variant = "base" if cfg["lam"] == 0 or k == 0 else (
        ("sasminus" if cfg["lam"] > 0 else "sasplus") + ("" if k == -1 else f"-k{k}"))
    lam = "" if variant == "base" else f"_lam{cfg['lam']:g}"
    # the hash tells apart runs that differ in any other value (lr, dropout, corpus, ...)
    digest = hashlib.sha1(json.dumps(identity(cfg), sort_keys=True).encode()).hexdigest()[:6]
    return f"{cfg['preset']}_{variant}{lam}_seed{cfg['seed']}_{digest}"


# --------------------------------------------------------------------------- batches

def _rng(seed: int, step: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, step, stream])


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Rows of step ``step``: an epoch-wise permutation seeded by (seed, epoch), so data order is a function of step."""
    start = step * batch_size
    idx = []
    while len(idx) < batch_size:
        epoch, pos = divmod(start + len(idx), n)
        perm = _rng(seed, epoch, 1).permutation(n)
        idx.extend(perm[pos: pos + batch_size - len(idx)])
    return np.asarray(idx)


def _vocab_moves(tokenizer_json: Path, vocab: dict[str, int]) -> str:
    """How a saved tokenizer's vocabulary differs from ``vocab``, as text; ``""`` if it does not."""
    try:
        saved = json.loads(tokenizer_json.read_text())["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"{tokenizer_json} cannot be read as a tokenizer ({e})") from e
    if saved == vocab:
        return ""
    other = len(set(saved) ^ set(vocab))
    moved = sum(1 for t, i in saved.items() if t in vocab and vocab[t] != i)
    return f"{moved} of {len(saved)} pieces have other ids, {other} pieces are in one vocabulary only"


def special_ids(tokenizer) -> tuple[int, int, int]:
    """The pieces that are never masked nor predicted: padding, [CLS] and [SEP]."""
    return tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id


def mask_tokens(ids: torch.Tensor, tokenizer, mask_prob: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: ``mask_prob`` of the non-special tokens; 80% [MASK], 10% random, 10% kept.

    Returns (input_ids, labels) with labels -100 at unmasked positions. At least one token is masked.
    """
    special = torch.isin(ids, torch.tensor(special_ids(tokenizer)))
    chosen = (torch.rand(ids.shape, generator=gen) < mask_prob) & ~special
    if not chosen.any():
        chosen.view(-1)[(~special).view(-1).nonzero()[0]] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    r = torch.rand(ids.shape, generator=gen)
    inp = ids.clone()
    inp[chosen & (r < 0.8)] = tokenizer.mask_token_id
    rand = chosen & (r >= 0.8) & (r < 0.9)
    inp[rand] = torch.randint(len(tokenizer), ids.shape, generator=gen)[rand]
    return inp, labels


def make_batch(data, rows: np.ndarray, tokenizer, mask_prob: float, seed: int, step: int, stream: int = 0):
    """Rows ``rows`` of ``data`` (a :class:`sasutils.corpus.Packed`) as one masked batch of B sequences of T pieces.

    Returns ``(input_ids, attention_mask, labels, parents)``, each (B, T) int64: the inputs after
    :func:`mask_tokens`, 1 at non-pad pieces, the original ids at masked positions (-100 elsewhere) and each piece's
    parent index (-1: none). The mask is drawn from a generator seeded by ``(seed, step, stream)`` alone, so a
    resumed or forked run, or another evaluation schedule, sees the same masks at the same step (``stream`` keeps
    different uses of one step, e.g. training and evaluation batches, apart).
    """
    ids = torch.from_numpy(data.input_ids[rows].astype(np.int64))
    gen = torch.Generator().manual_seed(int(_rng(seed, step, 2 + stream).integers(2**62)))
    inp, labels = mask_tokens(ids, tokenizer, mask_prob, gen)
    attn = (ids != tokenizer.pad_token_id).long()
    parents = torch.from_numpy(data.parents[rows].astype(np.int64))
    return inp, attn, labels, parents


# --------------------------------------------------------------------------- checkpoints

def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def save_checkpoint(model, tokenizer, run_dir: Path, step: int) -> Path:
    """``save_pretrained`` into a temporary folder, a manifest of file sizes last, then rename."""
    final = run_dir / "checkpoints" / f"step_{step:07d}"
    if final.exists():
        return final
    tmp = final.with_name("." + final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    transformers.utils.logging.disable_progress_bar()  # one bar per shard is noise here
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    files = {p.name: p.stat().st_size for p in tmp.iterdir()}
    _atomic_json(tmp / "manifest.json", {"step": step, "files": files})
    os.rename(tmp, final)
    return final


class CheckpointError(RuntimeError):
    """A checkpoint folder is incomplete or damaged (its manifest of file sizes does not match): it is not loaded."""


def verify_checkpoint(path: Path) -> None:
    """Raise :class:`CheckpointError` naming ``path`` unless every file in its manifest is present and whole."""
    man = path / "manifest.json"
    if not man.exists():
        raise CheckpointError(f"checkpoint {path} is incomplete: no manifest.json")
    try:
        files = json.loads(man.read_text())["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: manifest.json unreadable ({e})") from None
    for name, size in files.items():
        f = path / name
        if not f.exists() or f.stat().st_size != size:
            raise CheckpointError(f"checkpoint {path} is incomplete or corrupt: {name} missing or wrong size")


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's complete checkpoints, in step order (half-written ones are ignored)."""
    out = []
    for p in sorted(Path(run_dir, "checkpoints").glob("step_*")):
        m = re.fullmatch(r"step_(\d+)", p.name)
        if m and p.is_dir() and (p / "manifest.json").exists():
            out.append((int(m.group(1)), p))
    return out


def load_checkpoint(path: str | Path):
    """``(model, tokenizer)`` from a checkpoint folder, verified first."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = Path(path)
    verify_checkpoint(path)
    model = AutoModelForMaskedLM.from_pretrained(path)  # BERT, or the pre-LN Megatron-BERT (config's model_type)
    model_lib.set_attention(model, "sdpa")
    return model, AutoTokenizer.from_pretrained(path)


def _save_state(run_dir: Path, model, opt, step: int, wall: float, last_loss: float) -> None:
    tmp = run_dir / "state.pt.tmp"
    torch.save({"step": step, "model": model.state_dict(), "opt": opt.state_dict(), "wall": wall,
                "last_loss": last_loss}, tmp)
    os.replace(tmp, run_dir / "state.pt")


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The run's metrics log as a tidy DataFrame (one row per evaluation step)."""
    p = Path(run_dir) / "metrics.jsonl"
    if not p.exists():
        return pd.DataFrame()
    return pd.DataFrame([row for _, row in _metrics_rows(p)])


def _metrics_rows(p: Path) -> list[tuple[str, dict]]:
    """(line, row) of a metrics log; an unparsable *last* line (a torn append) is dropped, any other raises."""
    lines = p.read_text().splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append((line, json.loads(line)))
        except json.JSONDecodeError as e:
            if i == len(lines):
                break  # torn write of the last row: it is recomputed on resume
            raise TrainingError(f"{p}:{i}: not a JSON line ({e.msg})") from None
    return out


# --------------------------------------------------------------------------- evaluation

def _autocast(cfg: dict, device: torch.device):
    """bf16 autocast on CUDA when the preset asks for it (``amp``); a no-op on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bool(cfg.get("amp")) and device.type == "cuda")


@torch.no_grad()
def evaluate(model, data: CorpusData, cfg: dict) -> dict:
    """Held-out MLM loss on fixed batches with fixed masks, and the regularizer value on them."""
    model.eval()
    device = next(model.parameters()).device
    B = cfg["batch_size"]
    mb = cfg.get("micro_batch") or B
    n = min(len(data.eval), cfg["eval_batches"] * B)
    loss_sum, n_masked, reg_sum, n_arcs, words_sum = 0.0, 0, 0.0, 0, 0.0
    with model_lib.attention_weights(model), _autocast(cfg, device):
        for i in range(0, n, B):  # masks are drawn per batch, so they do not depend on micro_batch
            batch = make_batch(data.eval, np.arange(i, min(n, i + B)), data.tokenizer, cfg["mask_prob"], 12345, i, 7)
            for j in range(0, len(batch[0]), mb):
                inp, attn, labels, parents = (x[j:j + mb].to(device) for x in batch)
                loss, att = model_lib.masked_lm_loss(model, inp, attn, labels, output_attentions=True)
                k = int((labels != -100).sum())
                loss_sum += loss.item() * k
                n_masked += k
                reg_sum += syntactic_regularizer(att, parents, "sum").item()
                if cfg.get("reg_attention", "all") == "words":
                    words_sum += syntactic_regularizer(att, parents, "sum",
                                                       **reg_word_args(inp, attn, labels, data.tokenizer, cfg)).item()
                n_arcs += int(arc_matrix(parents).sum())
    model.train()
    out = {"eval_loss": loss_sum / max(n_masked, 1), "eval_reg": reg_sum / max(n_arcs, 1)}
    if cfg.get("reg_attention", "all") == "words":  # the trained term too (eval_reg stays the paper's)
        out["eval_reg_words"] = words_sum / max(n_arcs, 1)
    return out


def reg_word_args(inp: torch.Tensor, attn: torch.Tensor, labels: torch.Tensor, tokenizer, cfg: dict) -> dict:
    """Keyword arguments of :func:`~sasutils.regularizer.syntactic_regularizer` for the configured term:
    ``{}`` for the paper's (``reg_attention="all"``); for ``"words"``, ``word_mask`` (B, T) True on word
    pieces (not [CLS]/[SEP]/padding; [MASK] pieces are word pieces) and ``segment`` (B, T), the sentence
    index of each token in its packed row. Read off the unmasked ids: a random replacement can draw
    [CLS] or [SEP]."""
    if cfg.get("reg_attention", "all") != "words":
        return {}
    ids = torch.where(labels != -100, labels, inp)
    return {"word_mask": attn.bool() & (ids != tokenizer.cls_token_id) & (ids != tokenizer.sep_token_id),
            "segment": torch.cumsum(ids == tokenizer.cls_token_id, dim=1)}


# --------------------------------------------------------------------------- the loop

def train(
    cfg: dict,
    run_dir: str | Path,
    callbacks: Sequence[tuple[int, Callback]] = (),
    data: CorpusData | None = None,
    progress: bool = True,
    stop_at: int | None = None,
) -> pd.DataFrame:
    """Train (or resume) one run; returns the metrics table.

    ``callbacks``: ``(every, fn)`` -- ``fn(model, step)`` is called at every evaluation step that is
    a multiple of ``every`` and its flat dict joins the metrics row.
    ``stop_at``: pause on reaching this step, *before* its evaluation, with ``state.pt`` at that step
    (a later call resumes there; :func:`fork` branches another run from it). :func:`request_stop` does
    the same at whatever step comes next.
    """
    validate_config(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    saved = identity(json.loads(cfg_path.read_text())) if cfg_path.exists() else None
    cfg_json = json.loads(json.dumps(cfg, default=str))
    if saved is not None and saved != identity(cfg):
        ident = identity(cfg)
        diff = sorted(k for k in set(saved) | set(ident) if saved.get(k) != ident.get(k))
        raise TrainingError(f"{run_dir} holds a run with a different configuration (differs in {diff}); "
                            "use another run_dir or delete it")
    _atomic_json(cfg_path, cfg_json)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))

    if data is None:
        data = load_corpus(cfg["corpus"], cfg["corpus_sentences"], cfg["vocab_size"], cfg["seq_len"],
                           data_dir=cfg.get("data_dir"), progress=progress)
    tok = data.tokenizer
    saved_tok = run_dir / "tokenizer" / "tokenizer.json"
    if saved_tok.exists():  # a resumed (or forked) run must see the token ids it was trained with
        moved = _vocab_moves(saved_tok, tok.get_vocab())
        if moved:
            raise TrainingError(f"{saved_tok.parent} differs from the corpus tokenizer ({moved}): this run was started "
                                "with another tokenizer (from a rebuilt cache, or from a sasutils before 2026-11-27, whose "
                                "caches numbered the pieces by chance); finish it with the code and cache it started "
                                "with, or train into a new run_dir")
    else:
        save_atomic(tok, run_dir / "tokenizer")

    device = device_of(cfg)
    model = model_lib.build_model(cfg, len(tok), tok.pad_token_id, seed=cfg["seed"])
    if cfg["bias_init"] == "unigram":  # before any resume: a resumed run loads its own bias from state.pt
        model_lib.set_unigram_bias(model, data.train.input_ids, special_ids(tok))
    model = model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=(0.9, cfg["beta2"]), eps=1e-6)

    # resume
    start, wall0, last_loss = 0, 0.0, float("nan")
    state_path = run_dir / "state.pt"
    if state_path.exists():
        try:
            st = torch.load(state_path, weights_only=False, map_location=device)
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["opt"])
            start, wall0 = int(st["step"]), float(st["wall"])
            last_loss = st.get("last_loss", float("nan"))
            if not 0 <= start <= cfg["steps"]:
                raise ValueError(f"step {start} outside 0..{cfg['steps']}")
        except Exception as e:  # truncated file, garbage, a state of another model
            raise TrainingError(
                f"{state_path} is unreadable or does not fit this run ({type(e).__name__}: {e}); delete it to "
                "restart the run from step 0 (checkpoints hold weights only, so an exact resume needs state.pt)"
            ) from e
        _truncate_metrics(run_dir, start)
        print(f"resuming {run_dir.name} from step {start}")
    elif (run_dir / "metrics.jsonl").exists():
        (run_dir / "metrics.jsonl").unlink()  # no state: a fresh start, no stale rows

    ckpts = set(checkpoint_steps(cfg))
    t0 = time.time() - wall0
    model.train()
    mode = None
    bar = tqdm(range(start, cfg["steps"] + 1), initial=start, total=cfg["steps"] + 1,
               desc=run_dir.name, disable=not progress, mininterval=2)
    for step in bar:
        if (stop_at is not None and step == stop_at or _STOP.is_set()) and step < cfg["steps"]:
            _save_state(run_dir, model, opt, step, time.time() - t0, last_loss)
            if _STOP.is_set():
                print(f"stopped {run_dir.name} at step {step}; state.pt saved", flush=True)
            break
        # ---- evaluation, callbacks, checkpoint (at step s, before the update of step s)
        row = None
        if step % cfg["eval_every"] == 0 or step == cfg["steps"]:
            row = {"step": step, "train_loss": last_loss, "lam": lam_at(cfg, step),
                   "lr": lr_at(cfg, step) if step < cfg["steps"] else 0.0,
                   "tokens": int(step * cfg["batch_size"] * cfg["seq_len"]), **evaluate(model, data, cfg)}
            for every, fn in callbacks:
                if step % every == 0 or step == cfg["steps"]:
                    row.update(fn(model, step))
            row["wall"] = time.time() - t0
        if step in ckpts:  # before the step's row: a logged last step means its checkpoint and state are saved
            save_checkpoint(model, tok, run_dir, step)
            _save_state(run_dir, model, opt, step, time.time() - t0, last_loss)
        if row is not None:
            with open(run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("eval_loss", "sas_uas", "blimp_mean") if k in row})
        if step == cfg["steps"]:
            break

        # ---- one optimisation step
        lam = lam_at(cfg, step)
        want = "eager" if lam != 0 else "sdpa"
        if want != mode:
            model_lib.set_attention(model, want)
            mode = want
        torch.manual_seed(int(_rng(cfg["seed"], step, 9).integers(2**62)))  # dropout
        rows = batch_indices(len(data.train), cfg["batch_size"], cfg["seed"], step)
        batch = make_batch(data.train, rows, tok, cfg["mask_prob"], cfg["seed"], step)
        n_masked = int((batch[2] != -100).sum())
        mb = cfg.get("micro_batch") or len(rows)
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for i in range(0, len(rows), mb):  # gradient accumulation; one chunk unless micro_batch is set
            inp, attn, labels, parents = (x[i:i + mb].to(device) for x in batch)
            # weights make the chunks add up to the whole batch's mean loss (and mean/sum regularizer)
            w_loss = int((labels != -100).sum()) / n_masked
            w_reg = 1.0 if cfg["reg_reduction"] == "sum" else len(inp) / len(rows)
            with _autocast(cfg, device):
                loss, att = model_lib.masked_lm_loss(model, inp, attn, labels, output_attentions=lam != 0)
                total = loss * w_loss
                if lam != 0:
                    total = total + lam * w_reg * syntactic_regularizer(
                        att, parents, cfg["reg_reduction"], **reg_word_args(inp, attn, labels, tok, cfg))
            if not torch.isfinite(total):
                raise TrainingError(f"non-finite loss at step {step} ({total.item()}); the last good checkpoint "
                                    f"and state.pt in {run_dir} are from before it")
            total.backward()
            loss_sum += loss.item() * w_loss
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not torch.isfinite(grad_norm):
            raise TrainingError(f"non-finite gradient at step {step} (norm {grad_norm.item()}); the last good "
                                f"checkpoint and state.pt in {run_dir} are from before it")
        opt.step()
        last_loss = loss_sum
    bar.close()
    return read_metrics(run_dir)


def state_step(run_dir: str | Path) -> int | None:
    """The step of the run's ``state.pt`` (None if there is none)."""
    p = Path(run_dir) / "state.pt"
    return int(torch.load(p, weights_only=False, map_location="cpu")["step"]) if p.exists() else None


def fork(src_dir: str | Path, dst_dir: str | Path, dst_cfg: dict) -> Path:
    """Start run ``dst_cfg`` in ``dst_dir`` from the state of the run in ``src_dir`` at its step k.

    Allowed when the two runs are the same run up to step k: equal configurations except
    ``suppress_steps``, and the same regularizer weight at every step < k (e.g. SAS- paused at k
    and SAS-(k)). ``dst_dir`` gets the config, tokenizer, metrics rows and checkpoints of steps < k
    (checkpoints hard-linked where possible) and ``state.pt``; :func:`train` then resumes it at step k.
    Built in a temporary folder and renamed, so a failed fork leaves nothing behind.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    src_cfg = json.loads((src_dir / "config.json").read_text())
    if not (src_dir / "state.pt").exists():
        raise TrainingError(f"cannot fork {src_dir}: it has no state.pt")
    if (dst_dir / "config.json").exists():
        raise TrainingError(f"cannot fork into {dst_dir}: it already holds a run")
    a, b = identity(src_cfg), identity(dst_cfg)
    diff = sorted(x for x in set(a) | set(b) if x != "suppress_steps" and a.get(x) != b.get(x))
    if diff:
        raise TrainingError(f"cannot fork {dst_dir.name} from {src_dir.name}: configurations differ in {diff}")
    tmp = dst_dir.with_name("." + dst_dir.name + ".fork.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shutil.copy2(src_dir / "state.pt", tmp / "state.pt")  # first: k is the step of this copy, even if
        k = state_step(tmp)                                     # the source goes on training meanwhile
        bad = next((s for s in range(k) if lam_at(src_cfg, s) != lam_at(dst_cfg, s)), None)
        if bad is not None:
            raise TrainingError(f"cannot fork {dst_dir.name} from {src_dir.name} at step {k}: the regularizer "
                                f"weights differ at step {bad} ({lam_at(src_cfg, bad)} vs {lam_at(dst_cfg, bad)})")
        _atomic_json(tmp / "config.json", json.loads(json.dumps(dst_cfg, default=str)))
        shutil.copytree(src_dir / "tokenizer", tmp / "tokenizer")
        if (src_dir / "metric_settings.json").exists():  # the rows below were logged with them
            shutil.copy2(src_dir / "metric_settings.json", tmp / "metric_settings.json")
        rows = [line for line, row in _metrics_rows(src_dir / "metrics.jsonl") if row["step"] < k] \
            if (src_dir / "metrics.jsonl").exists() else []
        (tmp / "metrics.jsonl").write_text("".join(line + "\n" for line in rows))
        (tmp / "checkpoints").mkdir()
        for step, path in list_checkpoints(src_dir):
            if step < k:
                shutil.copytree(path, tmp / "checkpoints" / path.name, copy_function=_link_or_copy)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dst_dir.exists():  # e.g. an empty folder; config.json was checked above
        shutil.rmtree(dst_dir)
    os.rename(tmp, dst_dir)
    return dst_dir


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


def _truncate_metrics(run_dir: Path, start: int) -> None:
    """Keep the log rows of steps before ``start`` (rows from ``start`` on are recomputed)."""
    p = run_dir / "metrics.jsonl"
    if not p.exists():
        return
    keep = [line for line, row in _metrics_rows(p) if row["step"] < start]
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, p)
