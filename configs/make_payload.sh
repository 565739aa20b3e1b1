#!/usr/bin/env bash
# Build .gpu/payload.tgz for configs/gpu_sweep.sh: the data files the runs read (EWT dev, BLiMP) and the
# cached parses / tokenizer / packed rows of the 120k-sentence Wikipedia corpus (so the GPU machine,
# which has no spaCy and no network, parses nothing). Run here after one cpu-tiny run has filled the
# cache, and after `python -c "from sasutils.corpus import load_corpus; load_corpus('wikipedia', 120000, 8192, 128)"`
# for the four-layer runs' 128-piece rows. VOCABS="8192 16384" adds the 64-piece rows and tokenizer of other
# vocabulary sizes (after one run of each has filled the cache; gpu_seeds16k.json needs 16384).
set -euo pipefail
DATA=${SASUTILS_DATA:-../shared/data}; CACHE=${SASUTILS_CACHE:-$HOME/.cache/sasutils}
S=$(mktemp -d); trap 'rm -rf "$S"' EXIT
mkdir -p "$S/data/ud_english_ewt" "$S/data/blimp" "$S/cache/parses" "$S/cache/packed" "$S/cache/tokenizers"
cp "$DATA/ud_english_ewt/en_ewt-ud-dev.conllu" "$S/data/ud_english_ewt/"
cp -r "$DATA/blimp/data" "$S/data/blimp/"
cp "$CACHE"/parses/wikipedia_120000_v1.* "$S/cache/parses/"
cp "$CACHE"/packed/wikipedia_120000_v8192_c1_T{64,128}_e1000_f1.npz "$S/cache/packed/"
cp -r "$CACHE/tokenizers/wikipedia_120000_v8192_c1" "$S/cache/tokenizers/"
for V in ${VOCABS:-8192}; do
  [ "$V" = 8192 ] && continue
  cp "$CACHE/packed/wikipedia_120000_v${V}_c1_T64_e1000_f1.npz" "$S/cache/packed/"
  cp -r "$CACHE/tokenizers/wikipedia_120000_v${V}_c1" "$S/cache/tokenizers/"
done
mkdir -p .gpu && tar czf .gpu/payload.tgz -C "$S" . && ls -la .gpu/payload.tgz
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
