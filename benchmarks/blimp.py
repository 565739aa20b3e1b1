"""Benchmark: batched BLiMP PLL scorer (sasutils.blimp) vs a minicons-style scorer, same pairs, one run.

    python benchmarks/blimp.py [--quick] [--n-per-paradigm N] [--variant original|within_word_l2r]

minicons-style (what minicons' MaskedLMScorer does per sentence): all masked copies of ONE sentence in one
forward pass, full-vocabulary logits (copies, L, V) from the model, no batching across sentences and no
de-duplication. The batched scorer packs copies of many sentences per forward under a rows x length cap,
scores each distinct sentence once, and runs the MLM head only on the masked positions.

Model: the project's CPU preset shape (BertForMaskedLM, 2 layers, hidden 128, 4 heads, intermediate 512,
vocab 8192, 128 positions), RANDOM INIT (speed and agreement do not depend on training); WordPiece tokenizer
(lowercase, vocab 8192) trained on all BLiMP sentences. One CPU thread. The last line printed is JSON.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import BertWordPieceTokenizer
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sasutils.blimp import load_blimp, pseudo_log_likelihoods  # noqa: E402

N_ALL = 67_000


@torch.no_grad()
def minicons_style_pll(model, tok, sentences, variant="original"):
    """Per sentence: its n masked copies (n, L) in one forward, logits (n, L, V), log_softmax at the masks."""
    model.eval()
    out = []
    for s in sentences:
        enc = tok(s, return_special_tokens_mask=True, return_tensors="pt")
        ids, words = enc["input_ids"][0], enc.word_ids(0)  # (L,)
        pos = torch.tensor([t for t, sp in enumerate(enc["special_tokens_mask"][0].tolist()) if not sp])
        x = ids.repeat(len(pos), 1)  # (n, L)
        x[torch.arange(len(pos)), pos] = tok.mask_token_id
        if variant == "within_word_l2r":
            for r, t in enumerate(pos.tolist()):
                x[r, [j for j in range(t + 1, len(ids)) if words[j] == words[t]]] = tok.mask_token_id
        logits = model(input_ids=x).logits  # (n, L, V): the head runs on every position
        lp = torch.log_softmax(logits[torch.arange(len(pos)), pos], -1)  # (n, V)
        out.append(lp.gather(1, ids[pos][:, None]).sum().item())
    return np.array(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 pairs per paradigm (default 50)")
    ap.add_argument("--n-per-paradigm", type=int, default=None)
    ap.add_argument("--variant", default="original", choices=["original", "within_word_l2r"])
    ap.add_argument("--max-tokens-per-batch", type=int, default=4096)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    n_per = args.n_per_paradigm or (5 if args.quick else 50)
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    every = [s for p in load_blimp(args.data_dir) for s in (p.good, p.bad)]
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(every, vocab_size=8192, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                           show_progress=False)
    tok = BertTokenizerFast(tokenizer_object=wp._tokenizer)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=8192, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=512, max_position_embeddings=128)
    model = BertForMaskedLM(cfg).eval()
    pairs = load_blimp(args.data_dir, n_per_paradigm=n_per)
    sents = [p.good for p in pairs] + [p.bad for p in pairs]
    n_tok = sum(len(x) - 2 for x in tok(sents)["input_ids"])
    print(f"setup {time.perf_counter() - t0:.1f}s: tokenizer {len(tok)} pieces (trained on {len(every)} BLiMP "
          f"sentences), model {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params (random init)")
    print(f"{len(pairs)} pairs ({n_per}/paradigm), {len(sents)} sentences ({len(set(sents))} distinct), "
          f"{n_tok} masked copies, variant={args.variant}, 1 thread")

    # warm-up (allocator, kernels) on a few sentences
    pseudo_log_likelihoods(model, tok, sents[:20], variant=args.variant)
    minicons_style_pll(model, tok, sents[:20], variant=args.variant)

    t = time.perf_counter()
    batched = pseudo_log_likelihoods(model, tok, sents, variant=args.variant,
                                     max_tokens_per_batch=args.max_tokens_per_batch)
    t_b = time.perf_counter() - t
    t = time.perf_counter()
    ref = minicons_style_pll(model, tok, sents, variant=args.variant)
    t_m = time.perf_counter() - t

    n = len(pairs)
    diff = float(np.abs(batched - ref).max())
    same_correct = bool(((batched[:n] > batched[n:]) == (ref[:n] > ref[n:])).all())
    res = {
        "pairs": n, "n_per_paradigm": n_per, "variant": args.variant,
        "seconds_batched": round(t_b, 3), "seconds_minicons": round(t_m, 3),
        "pairs_per_s_batched": round(n / t_b, 1), "pairs_per_s_minicons": round(n / t_m, 1),
        "speedup_vs_minicons": round(t_m / t_b, 2),
        "max_abs_diff": diff, "same_correct": same_correct,
        "est_seconds_all_67000": round(N_ALL / (n / t_b), 1),
        "est_seconds_all_67000_minicons": round(N_ALL / (n / t_m), 1),
        "max_tokens_per_batch": args.max_tokens_per_batch, "threads": 1,
    }
    print(f"\n{'scorer':<16}{'seconds':>10}{'pairs/s':>10}{'est. 67k pairs':>16}")
    for name, sec in (("batched", t_b), ("minicons-style", t_m)):
        print(f"{name:<16}{sec:>10.2f}{n / sec:>10.1f}{N_ALL / (n / sec):>15.0f}s")
    print(f"speedup {t_m / t_b:.2f}x, max |PLL diff| {diff:.2e} nats, same correct/incorrect: {same_correct}")
    print(json.dumps(res))
    return 0 if diff <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
