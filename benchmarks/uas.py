"""Speed of the vectorised SAS scorer, side by side in one run, on EWT dev and one checkpoint.

(1) vectorised scoring vs the plain per-sentence, per-head reference loop of ``tests/test_sas.py``
    (same attentions, same counts -- checked); the loop runs on a subset and is timed per sentence;
(2) forward + scoring vs the bare forward pass that produces the attentions.

Usage: ``python benchmarks/uas.py [--quick] [--checkpoint PATH] [--threads 1]``. Without a checkpoint
a randomly initialised model of ``--preset`` (positions 64) is used (speed does not depend on the weights).
Last line: one JSON object with ``speedup_vs_loop`` and ``overhead_vs_forward``. Goals: >= 100x, <= 1.2x.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sasutils import sas  # noqa: E402
from sasutils.model import attention_weights, build_model, preset  # noqa: E402
from sasutils.tokenizer import train_wordpiece  # noqa: E402
from sasutils.train import load_checkpoint  # noqa: E402
from sasutils.treebank import load_treebank  # noqa: E402
from tests.test_sas import reference_counts  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--preset", default="cpu-tiny", help="architecture of the random model (no --checkpoint)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sents = load_treebank("ewt-dev")
    if args.checkpoint:
        model, tok = load_checkpoint(args.checkpoint)
    else:
        tok = train_wordpiece((" ".join(s.words) for s in load_treebank("ewt-train")), 8192)
        model = build_model(preset(args.preset, seq_len=64), len(tok), seed=0)
    model.eval()
    n = 200 if args.quick else args.sentences
    enc = sas.first_n(sas.encode_treebank(sents, tok, model.config.max_position_embeddings), n)
    n = len(enc)

    def forward_only():
        with torch.no_grad(), attention_weights(model):
            for b in sas.batches(enc):
                model.bert(input_ids=b.input_ids, attention_mask=b.attention_mask, output_attentions=True)

    def forward_and_score():
        return sas.count_uas(model, enc)

    # interleave repeats so background load hits both alike
    t_fwd, t_all = [], []
    for _ in range(3):
        t = time.perf_counter(); forward_only(); t_fwd.append(time.perf_counter() - t)
        t = time.perf_counter(); counts = forward_and_score(); t_all.append(time.perf_counter() - t)

    # scoring alone on precomputed attentions, vectorised vs loop, on a subset for the loop
    sub = sas.first_n(enc, 20 if args.quick else 60)
    with torch.no_grad(), attention_weights(model):
        chunks = []
        for b in sas.batches(sub):
            out = model.bert(input_ids=b.input_ids, attention_mask=b.attention_mask, output_attentions=True)
            chunks.append((b, torch.stack(out.attentions)))
    per_sentence = [None] * len(sub)
    for b, attn in chunks:
        for k, s in enumerate(b.index):
            T = len(sub.ids[s])
            per_sentence[s] = attn[:, k, :, :T, :T].numpy()
    t = time.perf_counter()
    ref_c, _, _ = reference_counts(per_sentence, sub)
    t_loop = (time.perf_counter() - t) / len(sub)
    t_vec_runs = []
    for _ in range(5):
        t = time.perf_counter()
        total = None
        for b, attn in chunks:
            c = sas.score_attention(attn, b, len(sub.relations))
            total = c if total is None else total.__iadd__(c)
        t_vec_runs.append((time.perf_counter() - t) / len(sub))
    t_vec = min(t_vec_runs)
    same = bool(np.array_equal(total.correct.numpy(), ref_c))
    speedup = t_loop / t_vec
    overhead = min(t_all) / min(t_fwd)
    L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    print(f"model: {L} layers x {H} heads; {n} EWT dev sentences (max {model.config.max_position_embeddings} pieces); "
          f"threads {args.threads}")
    print(f"  reference loop : {1000 * t_loop:8.2f} ms/sentence (on {len(sub)} sentences)")
    print(f"  vectorised     : {1000 * t_vec:8.3f} ms/sentence   counts identical: {same}")
    print(f"  bare forward   : {min(t_fwd):8.3f} s for {n} sentences")
    print(f"  forward+score  : {min(t_all):8.3f} s")
    print(json.dumps({"sentences": n, "speedup_vs_loop": round(speedup, 1), "overhead_vs_forward": round(overhead, 3),
                      "ms_per_sentence_loop": round(1000 * t_loop, 3), "ms_per_sentence_vectorised": round(1000 * t_vec, 4),
                      "counts_identical": same, "sas_uas": float((counts.correct[..., 0] / counts.n[..., 0]).max())}))


if __name__ == "__main__":
    main()
