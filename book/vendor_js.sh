#!/usr/bin/env bash
# Re-create book/_extra/_vendor/: the JavaScript the built book needs, so that it renders with no
# network access (Vega charts from Altair; MathJax for $...$ math).
#
# The files are committed; run this only to change versions (e.g. after an Altair upgrade, when
# tests/test_book.py::test_vendored_versions_match_altair says so). Needs `npm` and the npm registry.
#
#   bash book/vendor_js.sh                      # versions Altair asks for (vega@<major>, exact vega-lite, vega-embed@<major>)
#   VEGA=6 VEGALITE=6.4.1 VEGAEMBED=7 MATHJAX=3 bash book/vendor_js.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/_extra/_vendor"

read -r a_vega a_vl a_ve < <(python - <<'EOF'
import altair as alt
print(alt.VEGA_VERSION, alt.VEGALITE_VERSION, alt.VEGAEMBED_VERSION)
EOF
)
VEGA="${VEGA:-$a_vega}"
VEGALITE="${VEGALITE:-$a_vl}"
VEGAEMBED="${VEGAEMBED:-$a_ve}"
MATHJAX="${MATHJAX:-3}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "vega@$VEGA" "vega-lite@$VEGALITE" "vega-embed@$VEGAEMBED" "mathjax@$MATHJAX" >/dev/null
for tgz in *.tgz; do
    d="${tgz%.tgz}"
    mkdir "$d"
    tar xzf "$tgz" -C "$d"
done
ver() { python -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$1"/package/package.json; }
v_vega=$(ver vega-[0-9]*/); v_vl=$(ver vega-lite-*/); v_ve=$(ver vega-embed-*/); v_mj=$(ver mathjax-*/)

mkdir -p "$dest"
find "$dest" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
mkdir -p "$dest/mathjax/output/chtml/fonts" "$dest/mathjax/input/tex"
cp vega-[0-9]*/package/build/vega.min.js "$dest/"
cp vega-lite-*/package/build/vega-lite.min.js "$dest/"
cp vega-embed-*/package/build/vega-embed.min.js "$dest/"
cp vega-[0-9]*/package/LICENSE "$dest/LICENSE.vega"
cp vega-lite-*/package/LICENSE "$dest/LICENSE.vega-lite"
cp vega-embed-*/package/LICENSE "$dest/LICENSE.vega-embed"
# MathJax: the TeX -> CommonHTML component, its web fonts and the TeX extensions it may autoload
# (e.g. \boldsymbol); MathJax finds them relative to tex-chtml.js.
mj=$(ls -d mathjax-*/ | head -1)package
cp "$mj/es5/tex-chtml.js" "$dest/mathjax/"
cp -r "$mj/es5/output/chtml/fonts/woff-v2" "$dest/mathjax/output/chtml/fonts/"
cp -r "$mj/es5/input/tex/extensions" "$dest/mathjax/input/tex/"
cp "$mj/LICENSE" "$dest/mathjax/LICENSE"

cat > "$dest/versions.json" <<EOF
{
  "vega": "$v_vega",
  "vega-lite": "$v_vl",
  "vega-embed": "$v_ve",
  "mathjax": "$v_mj"
}
EOF
echo "vendored vega $v_vega, vega-lite $v_vl, vega-embed $v_ve, mathjax $v_mj into $dest ($(du -sh "$dest" | cut -f1))"
echo "update the version table in book/_extra/_vendor/README.md if versions changed"
