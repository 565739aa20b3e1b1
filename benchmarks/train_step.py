"""Steps/s of one training step on the default preset, three ways, side by side in one run.

(a) ``BertForMaskedLM(labels=...)``: full-vocabulary logits at every position;
(b) :func:`sasutils.model.masked_lm_loss`: the vocabulary projection at masked positions only;
(c) (b) plus the syntactic regularizer (eager attention, weights returned).

Usage: ``python benchmarks/train_step.py [--quick] [--preset cpu-tiny] [--threads 1]``.
The last line is one JSON object with ``masked_vs_full`` = b/a and ``reg_vs_plain`` = c/b.
Goals: masked_vs_full >= 1.3, reg_vs_plain >= 0.8. Batches are random tokens with random parses
(speed does not depend on the text).
"""

import argparse
import json
import time

import torch

from sasutils import model as M
from sasutils.regularizer import syntactic_regularizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = M.preset(args.preset)
    B, T, V = cfg["batch_size"], cfg["seq_len"], cfg["vocab_size"]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (B, T), generator=g)
    attn = torch.ones_like(ids)
    labels = torch.where(torch.rand(B, T, generator=g) < 0.15, ids, torch.full_like(ids, -100))
    parents = torch.where(torch.rand(B, T, generator=g) < 0.9, torch.randint(0, T, (B, T), generator=g), -1)

    def step_fn(kind):
        model = M.build_model(cfg, V, seed=0)
        if kind == "reg":
            model.set_attn_implementation("eager")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step():
            if kind == "full":
                loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
            else:
                loss, att = M.masked_lm_loss(model, ids, attn, labels, output_attentions=kind == "reg")
                if kind == "reg":
                    loss = loss + 0.01 * syntactic_regularizer(att, parents)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    n = 10 if args.quick else 40
    fns = {k: step_fn(k) for k in ("full", "masked", "reg")}
    for f in fns.values():  # warm-up
        for _ in range(3):
            f()
    times = {k: [] for k in fns}
    for _ in range(3):  # interleaved rounds so background load hits all three alike
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(n):
                f()
            times[k].append((time.perf_counter() - t) / n)
    sps = {k: 1 / min(v) for k, v in times.items()}
    print(f"preset {args.preset}: batch {B} x seq {T}, vocab {V}, threads {args.threads}")
    for k, v in sps.items():
        print(f"  {k:>7}: {v:7.2f} steps/s  ({1000 / v:6.1f} ms/step)")
    print(json.dumps({"preset": args.preset, "threads": args.threads, "steps_per_s_full": round(sps["full"], 3),
                      "steps_per_s_masked": round(sps["masked"], 3), "steps_per_s_reg": round(sps["reg"], 3),
                      "masked_vs_full": round(sps["masked"] / sps["full"], 3),
                      "reg_vs_plain": round(sps["reg"] / sps["masked"], 3)}))


if __name__ == "__main__":
    main()
