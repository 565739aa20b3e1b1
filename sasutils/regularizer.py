"""The syntactic regularizer (Chen et al. 2024, section "syntactic regularization").

.. math::

    L = L_{MLM} + \\lambda \\sum_i \\sum_{j \\in D(i)} \\max_{l,h} A^{(l,h)}_{ij}

``D(i)`` is the set of syntactic neighbours of token ``i`` -- its parent and its children -- so
each arc counts in both directions (child->parent and parent->child). The max runs over every layer
and head: the term measures the strongest attention any head pays along a parse arc.
``lambda > 0`` penalises syntactic attention (SAS-), ``lambda < 0`` rewards it (SAS+).

Reduction: the paper sums without normalising (``reduction="sum"``, which makes lambda depend on
batch size and sequence length). The default here is ``"mean"``: the same quantity divided by the
number of (i, j) arc pairs in the batch, i.e. the mean over arcs of the max attention along the arc,
in [0, 1], so one lambda transfers between presets.

Attention over words (``word_mask``; the training option ``reg_attention="words"``, not in the paper):
each attention row is first renormalised over the *other word pieces* of its own sentence,

.. math::

    \\tilde A_{ij} = \\frac{A_{ij} w_j [j \\ne i]}{\\sum_{j'} A_{ij'} w_{j'} [j' \\ne i]}

(``w_j`` = 1 on the word pieces of i's sentence, 0 on [CLS], [SEP], padding and the other sentences
packed into the same row), which is what the SAS scalar reads: its argmax runs over the other words of
the sentence. The paper's term can be met by moving attention mass to [CLS],
[SEP] or the token itself while the word-to-word pattern still follows the arcs (seen at 4 layers:
arc attention 0.04, SAS 0.34); the renormalised term cannot.

Word-piece rule: arcs join the *first* piece of each word (the parser's words mapped to WordPiece
tokens); later pieces of a word carry no arc. ``parents[b, t]`` is the token index of t's parent,
or -1 (no arc: root, non-first piece, special token, padding).
"""

from __future__ import annotations

import torch


def arc_matrix(parents: torch.Tensor) -> torch.Tensor:
    """Symmetric arc indicator M (B, T, T) from parents (B, T): M[b,i,j] = 1 iff j in D(i)."""
    B, T = parents.shape
    has = parents >= 0
    m = torch.zeros(B, T, T, dtype=torch.bool, device=parents.device)
    b, i = has.nonzero(as_tuple=True)
    j = parents[b, i].long()
    m[b, i, j] = True  # child -> parent
    m[b, j, i] = True  # parent -> child
    return m


def max_attention(attentions: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
    """max over layers and heads: (B, T, T) from L tensors (B, H, T, T); a running max, no (L*H) stack."""
    out = attentions[0].amax(dim=1)
    for a in attentions[1:]:
        out = torch.maximum(out, a.amax(dim=1))
    return out


def over_words(attention: torch.Tensor, word_mask: torch.Tensor, segment: torch.Tensor | None = None) -> torch.Tensor:
    """Rows renormalised over the other word pieces: (B, H, T, T) -> (B, H, T, T); see the module docstring.

    ``word_mask``: (B, T) bool, True on word pieces. ``segment``: (B, T) sentence index of each token
    (rows pack several sentences); when given, row i keeps only the pieces of its own sentence. Rows with
    no attention on other words become 0.
    """
    T = attention.shape[-1]
    keep = word_mask[:, None, :] & ~torch.eye(T, dtype=torch.bool, device=attention.device)  # (B, T, T)
    if segment is not None:
        keep = keep & (segment[:, :, None] == segment[:, None, :])
    a = attention * keep[:, None]
    return a / a.sum(-1, keepdim=True).clamp(min=1e-12)


def syntactic_regularizer(
    attentions: tuple[torch.Tensor, ...] | list[torch.Tensor], parents: torch.Tensor, reduction: str = "mean",
    word_mask: torch.Tensor | None = None, segment: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sum_i sum_{j in D(i)} max_{l,h} A^{(l,h)}_{ij}`` (``"sum"``) or its mean over arc pairs (``"mean"``).

    ``attentions``: L tensors (B, H, T, T), rows = attending token i, columns = attended token j.
    ``parents``: (B, T) token index of the parent or -1. ``word_mask``: (B, T) bool; when given, each
    A is first renormalised over the other word pieces (of the same ``segment``, if given; :func:`over_words`).
    Returns a scalar (differentiable).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if word_mask is not None:
        attentions = [over_words(a, word_mask, segment) for a in attentions]
    m = arc_matrix(parents)
    total = (max_attention(attentions) * m).sum()
    if reduction == "sum":
        return total
    return total / m.sum().clamp(min=1)
