"""BERT presets and the masked-positions-only MLM loss.

The model is Hugging Face's :class:`~transformers.BertForMaskedLM` (what the paper studies), built
from a named preset; with ``ln_placement="pre"`` it is :class:`~transformers.MegatronBertForMaskedLM`, the same
BERT with its layer norms moved in front of each sub-layer (Shoeybi et al. 2019; see :func:`build_model`). A preset is a plain dict of values: the architecture *and* the training recipe
that goes with it, so that ``02_train`` at a preset name is one reproducible configuration.

Presets:

- ``cpu-tiny`` -- the CPU default (2 layers x 8 heads, hidden 128, sequences of 64 pieces, 40% masking).
- ``gpu-small`` -- a GPU-hour scale model (4 layers x 8 heads, hidden 256, seq 128).
- ``bert-base`` -- the paper's configuration (12 x 12, hidden 768, seq 512, batch 256, uncased WordPiece
  30,522, MLM only, BERT's dropout 0.1).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM, MegatronBertConfig, MegatronBertForMaskedLM

# Architecture + recipe, as plain values. ``steps`` is the run length *and* the lr-decay horizon.
PRESETS: dict[str, dict] = {
    # found by the search in notebooks/05_regime.ipynb (book chapter "Finding the transition"):
    # dropout 0 and masking 40% bring the transition forward; 8 heads of 16 dims; 64-piece rows
    # keep most Wikipedia sentences whole and let SAS be scored on realistic sentence lengths.
    "cpu-tiny": dict(
        num_hidden_layers=2, hidden_size=128, num_attention_heads=8, intermediate_size=512,
        seq_len=64, vocab_size=8192, dropout=0.0, mask_prob=0.4,
        batch_size=32, lr=2e-3, warmup=200, weight_decay=0.01, beta2=0.98, steps=5000,
        corpus="wikipedia", corpus_sentences=120_000, amp=False,
    ),
    "gpu-small": dict(
        num_hidden_layers=4, hidden_size=256, num_attention_heads=8, intermediate_size=1024,
        seq_len=128, vocab_size=16384, dropout=0.0, mask_prob=0.15,
        batch_size=128, lr=1e-3, warmup=1000, weight_decay=0.01, beta2=0.98, steps=30_000,
        corpus="wikipedia+gutenberg", corpus_sentences=600_000, amp=True,
    ),
    "bert-base": dict(
        num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
        seq_len=512, vocab_size=30522, dropout=0.1, mask_prob=0.15,
        batch_size=256, lr=1e-4, warmup=10_000, weight_decay=0.01, beta2=0.999, steps=100_000,
        corpus="wikipedia+gutenberg", corpus_sentences=None, amp=True,
    ),
}
ARCH_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
# (config, model) per layer-norm placement. "post": BERT's layer norm after each residual sum; "pre": before each
# sub-layer (Megatron-BERT)
ARCHITECTURES = {"post": (BertConfig, BertForMaskedLM), "pre": (MegatronBertConfig, MegatronBertForMaskedLM)}
LN_PLACEMENTS = tuple(ARCHITECTURES)


def preset(name: str, **overrides) -> dict:
    """A copy of preset ``name`` with ``overrides`` applied (unknown keys are an error)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    cfg = dict(PRESETS[name])
    bad = set(overrides) - set(cfg)
    if bad:
        raise ValueError(f"unknown preset field(s) {sorted(bad)}; known: {sorted(cfg)}")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def build_model(cfg: dict, vocab_size: int, pad_token_id: int = 0, seed: int | None = None) -> BertForMaskedLM:
    """A freshly initialised ``BertForMaskedLM`` for preset dict ``cfg``.

    ``cfg["ln_placement"]`` (default ``"post"``): ``"post"`` is BERT's ``x = LN(x + f(x))`` after each
    attention and feed-forward block, with a layer norm on the embeddings; ``"pre"`` is
    ``x = x + f(LN(x))`` with one final layer norm after the last layer and none on the embeddings --
    :class:`~transformers.MegatronBertForMaskedLM`, which has BERT's modules, parameter count, initialisation
    (``initializer_range``) and MLM head, and is saved and loaded as its own model type. With the same
    seed both placements draw the same initial weights (layer norms start at 1 and 0 and draw nothing).

    Attention uses ``sdpa`` (fast); :func:`attention_weights` switches to ``eager`` where the
    weights are read, since ``sdpa`` returns none. The pre-LN model has eager attention only.
    """
    if seed is not None:
        torch.manual_seed(seed)
    placement = cfg.get("ln_placement", "post")
    if placement not in LN_PLACEMENTS:
        raise ValueError(f"parameter ln_placement={placement!r}: must be one of {LN_PLACEMENTS}")
    config_cls, model_cls = ARCHITECTURES[placement]
    config = config_cls(
        vocab_size=vocab_size,
        max_position_embeddings=cfg["seq_len"],
        hidden_dropout_prob=cfg["dropout"],
        attention_probs_dropout_prob=cfg["dropout"],
        pad_token_id=pad_token_id,
        type_vocab_size=1,
        initializer_range=cfg.get("init_range", 0.02),  # std of the normal init (BERT: 0.02)
        **{k: cfg[k] for k in ARCH_KEYS},
    )
    model = model_cls(config)
    pos_init = cfg.get("pos_init", "normal")
    if pos_init != "normal":  # set after the normal init, so every other weight equals the "normal" run of the same seed
        with torch.no_grad():
            model.bert.embeddings.position_embeddings.weight.copy_(
                initial_positions(pos_init, cfg["seq_len"], cfg["hidden_size"], config.initializer_range))
    qk = cfg.get("qk_init", 1.0)
    if qk != 1.0:  # scaled after the normal init, so every other weight equals the qk_init=1 run of the same seed
        scale_query_key(model, qk)
    set_attention(model, "sdpa")
    return model


def scale_query_key(model, factor: float) -> None:
    """Multiply every layer's query and key projections by ``factor`` (in place; weights and biases, though BERT's
    biases start at 0).

    The attention logits ``(x W_q + b_q)(x W_k + b_k)^T / sqrt(d)`` then scale by ``factor^2``: with a small
    factor every head starts at near-uniform attention, and since the gradient of ``W_q`` is proportional to the keys
    (and that of ``W_k`` to the queries), the logits also start to grow more slowly -- the small-initialisation picture of
    plateaus in attention models (``qk_init``). The values, output and feed-forward weights are untouched. Whether the
    logits stay small depends on the optimiser: under Adam they need not (see the book's *Attention that starts
    nearer uniform*).
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".attention.self.query." in name or ".attention.self.key." in name:
                p.mul_(factor)


def set_unigram_bias(model, ids, special_ids) -> None:
    """Set the MLM head's output bias to the log unigram frequencies of the training pieces (in place).

    ``b_v = log((c_v + 1) / (N + V))``: ``c_v`` counts piece v in ``ids`` (the packed training rows, any shape),
    leaving out ``special_ids`` (padding, [CLS], [SEP]: never a label), N the pieces counted, V the vocabulary
    size (add-one smoothing, so unseen pieces get a finite bias). The first logits, ``W h + b`` with ``W h``
    near 0, then give the unigram distribution, and training starts at the unigram loss instead of log V.
    """
    bias = model.cls.predictions.bias
    V = bias.shape[0]
    flat = np.asarray(ids).ravel()
    counts = np.bincount(flat[~np.isin(flat, list(special_ids))], minlength=V)[:V].astype(np.float64)
    with torch.no_grad():
        bias.copy_(torch.from_numpy(np.log((counts + 1) / (counts.sum() + V))).to(bias.dtype))


def set_attention(model, impl: str) -> None:
    """Switch ``model`` to attention implementation ``impl`` (``"sdpa"`` or ``"eager"``) where it has both;
    a model without sdpa (``_supports_sdpa`` False: the pre-LN :class:`~transformers.MegatronBertForMaskedLM`)
    stays eager."""
    if impl == "sdpa" and not getattr(model, "_supports_sdpa", True):
        return
    if model.config._attn_implementation != impl:
        model.set_attn_implementation(impl)


def sinusoidal_positions(n_positions: int, dim: int, std: float) -> torch.Tensor:
    """Sinusoidal position table (Vaswani et al. 2017) scaled to entry RMS ``std``, shape (T, D).

    ``P[p, 2i] = c sin(p / 10000^(2i/D))``, ``P[p, 2i+1] = c cos(p / 10000^(2i/D))`` with ``c = sqrt(2) std``
    (sin^2 averages 1/2), so the table has the scale of BERT's normal init but a relative-position
    structure from the start: ``P[p] . P[q]`` depends on ``p - q`` only. A learned table initialised so
    (``pos_init="sinusoidal"``) is still trained; the architecture stays BERT's.
    """
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return (table * math.sqrt(2) * std).float()


POS_INITS = ("normal", "sinusoidal", "zero")


def initial_positions(init: str, n_positions: int, dim: int, std: float, seed: int = 0) -> torch.Tensor:
    """A position table at initialisation, shape (n_positions, dim), for ``pos_init`` = ``init``.

    ``"normal"``: N(0, std) drawn with ``seed`` (what BERT's init draws, though not the same numbers as the model's
    own seeded init); ``"sinusoidal"``: :func:`sinusoidal_positions`; ``"zero"``: every position identical, so
    attention sees no order until training breaks the symmetry. Each row depends on its position only, so the
    first T rows of a longer table are the table of T rows. Raises ``ValueError`` naming ``init``.
    """
    if init == "normal":
        return torch.empty(n_positions, dim).normal_(0.0, std, generator=torch.Generator().manual_seed(seed))
    if init == "sinusoidal":
        return sinusoidal_positions(n_positions, dim, std)
    if init == "zero":
        return torch.zeros(n_positions, dim)
    raise ValueError(f"parameter init={init!r}: must be one of {POS_INITS}")


@contextlib.contextmanager
def attention_weights(model: BertForMaskedLM) -> Iterator[BertForMaskedLM]:
    """Context in which ``model`` runs eager attention, so ``output_attentions=True`` returns weights."""
    before = model.config._attn_implementation
    set_attention(model, "eager")
    try:
        yield model
    finally:
        set_attention(model, before)


@contextlib.contextmanager
def position_blind(model) -> Iterator:
    """Context in which ``model``'s learned position table is replaced by its mean row, restored on exit.

    ``P[p] <- (1/T) sum_q P[q]`` for every position p, shape (T, D) kept: the table's mean stays, what differs
    between positions goes, so the encoder is permutation-equivariant: attention can follow content only. Comparing a head's UAS with and without this ablation separates what it gets from word
    order from what it gets from the words.
    """
    table = model.bert.embeddings.position_embeddings.weight
    saved = table.detach().clone()
    with torch.no_grad():
        table.copy_(saved.mean(0, keepdim=True).expand_as(saved))
    try:
        yield model
    finally:
        with torch.no_grad():
            table.copy_(saved)


def extend_positions(model, n_positions: int, seed: int = 0, init: str = "normal") -> None:
    """Grow ``model``'s learned position table from T to ``n_positions`` rows (in place).

    ``P'[:T] = P``; ``P'[T:]`` as the run's ``pos_init`` would have drawn them: ``"normal"`` N(0, initializer_range)
    (drawn with ``seed``), ``"sinusoidal"`` rows T.. of :func:`sinusoidal_positions`, ``"zero"`` zeros. These are the
    rows a model built with ``n_positions`` positions but trained on rows of T pieces would hold, since no batch
    reaches them (AdamW's decoupled weight decay, which would shrink them slightly, is ignored). Lets a model
    score sentences longer than its rows, as a model from a default ``BertConfig`` (512 positions) trained on
    short windows does. Raises ``ValueError`` naming the parameter if ``n_positions`` does not exceed T or
    ``init`` is unknown.
    """
    emb = model.bert.embeddings
    old = emb.position_embeddings.weight
    T, D = old.shape
    if n_positions <= T:
        raise ValueError(f"parameter n_positions={n_positions}: must exceed the model's {T} positions")
    new = initial_positions(init, n_positions, D, model.config.initializer_range, seed=seed).to(old.dtype)
    new[:T] = old.detach().cpu()
    emb.position_embeddings = torch.nn.Embedding.from_pretrained(new.to(old.device), freeze=False)
    emb.register_buffer("position_ids", torch.arange(n_positions, device=old.device).unsqueeze(0), persistent=False)
    if hasattr(emb, "token_type_ids"):  # BERT has this buffer, Megatron-BERT (pre-LN) does not
        emb.register_buffer("token_type_ids", torch.zeros(1, n_positions, dtype=torch.long, device=old.device),
                            persistent=False)
    model.config.max_position_embeddings = n_positions


def masked_lm_loss(
    model: BertForMaskedLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """MLM cross-entropy computed at the masked positions only.

    Shapes: ``input_ids``, ``attention_mask``, ``labels``: (B, T); ``labels`` is -100 where not
    masked. Equal to ``BertForMaskedLM(..., labels=labels).loss`` but the vocabulary projection runs on
    the N masked rows, (N, D) @ (D, V), instead of all B*T positions -- the decoder dominates the
    cost of a small model with a large vocabulary.

    Returns ``(loss, attentions)``; ``attentions`` is a tuple of L tensors (B, H, T, T) when
    ``output_attentions`` (the model must be in eager mode, see :func:`attention_weights`), else None.
    """
    out = model.bert(input_ids=input_ids, attention_mask=attention_mask, output_attentions=output_attentions)
    sel = labels != -100
    logits = model.cls(out.last_hidden_state[sel])  # (N, V)
    # sum / N = the mean; 0 (not NaN) for a micro-batch chunk without masked tokens
    loss = F.cross_entropy(logits.float(), labels[sel], reduction="sum") / sel.sum().clamp(min=1)
    return loss, (out.attentions if output_attentions else None)
