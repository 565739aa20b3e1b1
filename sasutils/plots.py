"""Altair figures for the notebooks and the book.

Charts are interactive Vega-Lite specs. In the built book they are drawn by JavaScript that the book
ships itself (``book/_extra/_vendor/``, copied to ``_build/html/_vendor/``), so pages work with no
network access: call :func:`use_offline_renderer` once at the top of a book notebook.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import altair as alt

# --- offline rendering ---

#: Where the vendored Vega / Vega-Lite / vega-embed / MathJax files live in the repository.
VENDOR_DIR = Path(__file__).resolve().parent.parent / "book" / "_extra" / "_vendor"
#: Their folder relative to the root of the built HTML (``html_extra_path`` copies them there).
VENDOR_URL = "_vendor"
#: Name under which the renderer is registered with ``alt.renderers``.
RENDERER_NAME = "sasutils-offline"
_JS_FILES = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")


def vendored_versions() -> dict[str, str]:
    """Versions of the vendored JavaScript (``book/_extra/_vendor/versions.json``)."""
    return json.loads((VENDOR_DIR / "versions.json").read_text())


def check_vendored_versions() -> list[str]:
    """Mismatches between the vendored JavaScript and what the installed Altair asks for.

    Altair names ``vega@<major>``, an exact ``vega-lite`` and ``vega-embed@<major>``; an empty list
    means the vendored files fit. Fix a mismatch with ``bash book/vendor_js.sh``.
    """
    have = vendored_versions()
    want = {"vega": alt.VEGA_VERSION, "vega-lite": alt.VEGALITE_VERSION, "vega-embed": alt.VEGAEMBED_VERSION}
    problems = []
    for lib, spec in want.items():
        got = have.get(lib, "missing")
        # altair's version strings are prefixes: "6" (any 6.x), "6.4.1" (exactly), "7" (any 7.x)
        if got.split(".")[: len(spec.split("."))] != spec.split("."):
            problems.append(f"{lib}: altair {alt.__version__} asks for {spec}, vendored {got}")
    return problems


# The script loads the three bundles once per page (shared promise), then draws. The vendor folder is
# found from the page's Sphinx content root, so the same notebook output works at any page depth.
# Outside a Sphinx page (Jupyter) it falls back to ``fallback_base`` (default: jsDelivr, same versions).
_HTML = """\
<style>
  .sasutils-chart.vega-embed {{ width: 100%; display: flex; overflow-x: auto; }}
  .sasutils-chart.vega-embed details, .sasutils-chart.vega-embed details summary {{ position: relative; }}
</style>
<div id="{div}" class="sasutils-chart"></div>
<script type="text/javascript">
(function () {{
  var spec = {spec}, embedOpt = {embed_opt}, el = document.getElementById("{div}");
  var w = window, files = {files};
  function contentRoot() {{
    var r = document.documentElement.getAttribute("data-content_root");
    if (r !== null) return r;
    var s = document.querySelector('script[src*="_static/documentation_options.js"]');
    return s ? s.getAttribute("src").split("_static/documentation_options.js")[0] : null;
  }}
  var root = contentRoot();
  var urls = root === null ? {fallback} : files.map(function (f) {{ return root + "{vendor_url}/" + f; }});
  function load(src) {{
    return new Promise(function (resolve, reject) {{
      // The bundles are UMD: hide an AMD loader (require.js) so they define plain globals.
      var amd = w.define; w.define = undefined;
      var s = document.createElement("script");
      s.src = src;
      s.onload = function () {{ w.define = amd; resolve(); }};
      s.onerror = function () {{ w.define = amd; reject(new Error("could not load " + src)); }};
      document.head.appendChild(s);
    }});
  }}
  if (!w.sasutilsVegaReady) {{
    w.sasutilsVegaReady = w.vegaEmbed ? Promise.resolve() :
      urls.reduce(function (p, u) {{ return p.then(function () {{ return load(u); }}); }}, Promise.resolve());
  }}
  w.sasutilsVegaReady
    .then(function () {{ return w.vegaEmbed(el, spec, embedOpt); }})
    .catch(function (err) {{
      el.innerHTML = '<pre style="color:red;white-space:pre-wrap">Chart failed: ' + String(err && err.message || err) + "</pre>";
      console.error(err);
    }});
}})();
</script>"""


def _cdn_urls() -> list[str]:
    v = vendored_versions()
    return [f"https://cdn.jsdelivr.net/npm/{lib}@{v[lib]}/build/{f}" for lib, f in zip(("vega", "vega-lite", "vega-embed"), _JS_FILES)]


def offline_html(spec: dict[str, Any], embed_options: dict[str, Any] | None = None, fallback_base: str | None = None) -> str:
    """HTML (a div and a script) that draws a Vega-Lite ``spec`` with the book's vendored JavaScript.

    ``fallback_base``: folder URL holding the three ``*.min.js`` files, used only when the page is not
    a Sphinx page (no content root), e.g. in Jupyter; default: the jsDelivr CDN, same versions.
    """
    div = f"sasutils-chart-{uuid.uuid4().hex}"
    fallback = _cdn_urls() if fallback_base is None else [f"{fallback_base.rstrip('/')}/{f}" for f in _JS_FILES]
    opts = {"mode": "vega-lite", **(embed_options or {})}

    def js(obj: Any) -> str:  # JSON that is safe inside <script>
        return json.dumps(obj).replace("</", "<\\/")

    return _HTML.format(
        div=div, spec=js(spec), embed_opt=js(opts), files=js(list(_JS_FILES)), fallback=js(fallback), vendor_url=VENDOR_URL
    )


def use_offline_renderer(embed_options: dict[str, Any] | None = None, fallback_base: str | None = None) -> None:
    """Make Altair charts display as :func:`offline_html` (call once per notebook; idempotent).

    The output is a ``text/html`` bundle, which myst-nb puts into the book page as is; the page then
    loads ``<content root>/_vendor/*.min.js`` from the book itself (no network).
    """

    def render(spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
        opts = {**(embed_options or {}), **metadata.get("embed_options", {})}
        return {"text/html": offline_html(spec, opts, fallback_base), "text/plain": "<altair chart>"}

    alt.renderers.register(RENDERER_NAME, render)
    alt.renderers.enable(RENDERER_NAME)


# --- figures ---


_RUN_SEL = "run_sel"


def _legend_selection(field: str = "run"):
    return alt.selection_point(fields=[field], bind="legend", name=_RUN_SEL)


def _legend_encodings(by: str):
    """``(selection, opacity, colour)``: one line per ``by`` value, coloured, with a bottom legend whose click
    highlights that line (the others fade to 0.15)."""
    sel = _legend_selection(by)
    return (sel, alt.condition(sel, alt.value(1.0), alt.value(0.15)),
            alt.Color(f"{by}:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=500)))


def training_curves(log, cfg: dict | None = None):
    """One run's curves from its metrics log: held-out loss, regularizer value, SAS scalar, BLiMP.

    Panels share the step axis; the grey band marks the steps where the regularizer was on.
    """
    import pandas as pd

    panels = [("eval_loss", "held-out MLM loss (nats)"), ("eval_reg", "mean max attention on arcs"),
              ("sas_uas", "SAS (best-head UAS)"), ("blimp_mean", "BLiMP mean accuracy")]
    charts = []
    k = (cfg or {}).get("suppress_steps", 0)
    lam = (cfg or {}).get("lam", 0)
    band = None
    if lam and k != 0:
        end = cfg["steps"] if k == -1 else k
        band = alt.Chart(pd.DataFrame({"start": [0], "end": [end]})).mark_rect(opacity=0.12, color="grey").encode(
            x="start:Q", x2="end:Q")
    for col, title in panels:
        if col not in log or log[col].notna().sum() == 0:
            continue
        d = log[["step", col]].dropna()
        line = alt.Chart(d).mark_line(point=True).encode(
            x=alt.X("step:Q", title="step"), y=alt.Y(f"{col}:Q", title=title, scale=alt.Scale(zero=False)),
            tooltip=["step", alt.Tooltip(f"{col}:Q", format=".4f")])
        layer = [line]
        if col == "sas_uas" and "offset_best" in log:
            layer.append(alt.Chart(log[["step", "offset_best"]].dropna()).mark_line(strokeDash=[4, 3], color="grey")
                         .encode(x="step:Q", y="offset_best:Q", tooltip=[alt.Tooltip("offset_best:Q", format=".3f")]))
        if band is not None:
            layer.insert(0, band)
        charts.append(alt.layer(*layer).properties(width=520, height=130))
    return alt.vconcat(*charts).resolve_scale(x="shared")


# metrics-log column -> the short name the figures use
LOG_COLUMNS = {"eval_loss": "loss", "sas_uas": "uas", "offset_best": "offset", "blimp_mean": "blimp"}


def developmental(curves, found=None, by: str = "run"):
    """The paper's developmental figure: loss, SAS and BLiMP vs step, one line per ``by`` value,
    with dotted rules at the structure onset (▲ at the top) and capabilities onset (● at the top),
    from ``found`` (:func:`sasutils.onsets.onset_table` / ``transition_report`` rows). Clicking a
    legend entry highlights one line.

    ``curves``: metrics logs as training writes them (``eval_loss``, ``sas_uas``, ``offset_best``,
    ``blimp_mean``) or with the short names (``loss``, ``uas``, ``offset``, ``blimp``)."""
    import pandas as pd

    curves = curves.rename(columns={k: v for k, v in LOG_COLUMNS.items() if k in curves and v not in curves})
    sel = _legend_selection(by)
    opacity = alt.condition(sel, alt.value(1.0), alt.value(0.15))
    marks = None
    if found is not None and len(found):
        parts = [found[[by, key]].dropna().rename(columns={key: "onset"}).assign(kind=name, shape=shape)
                 for key, name, shape in [("structure_onset", "▲ structure onset", "triangle-up"),
                                          ("capabilities_onset", "● capabilities onset", "circle")]
                 if key in found]
        marks = pd.concat(parts) if parts else None
    rows = []
    for col, title in [("loss", "held-out MLM loss"), ("uas", "SAS (best-head UAS)"), ("blimp", "BLiMP mean")]:
        if col not in curves or curves[col].notna().sum() == 0:
            continue
        d = curves[[by, "step", col]].dropna()
        base = alt.Chart(d).mark_line(point=True).encode(
            x=alt.X("step:Q"), y=alt.Y(f"{col}:Q", title=title, scale=alt.Scale(zero=False)),
            color=alt.Color(f"{by}:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=500)),
            opacity=opacity, tooltip=[by, "step", alt.Tooltip(f"{col}:Q", format=".4f")])
        if not rows:
            base = base.add_params(sel)  # one selection, defined once, shared by every panel
        layer = [base]
        if col == "uas" and "offset" in curves:
            layer.append(alt.Chart(curves[[by, "step", "offset"]].dropna()).mark_line(strokeDash=[4, 3])
                         .encode(x="step:Q", y="offset:Q", color=f"{by}:N", opacity=opacity,
                                 tooltip=[by, alt.Tooltip("offset:Q", title="best offset baseline", format=".3f")]))
        if marks is not None and len(marks):
            enc = dict(x="onset:Q", color=f"{by}:N", opacity=opacity,
                       tooltip=[by, "kind", alt.Tooltip("onset:Q", format=".0f")])
            layer.append(alt.Chart(marks).mark_rule(strokeDash=[2, 2]).encode(**enc))
            layer.append(alt.Chart(marks).mark_point(filled=True, size=70).encode(
                y=alt.value(4), shape=alt.Shape("shape:N", scale=None, legend=None), **enc))
        rows.append(alt.layer(*layer).properties(width=560, height=150))
    return alt.vconcat(*rows).resolve_scale(x="shared")


def causal(logs, variants=("Base", "SAS+", "SAS-"), by: str = "variant"):
    """The paper's causal figure: loss, SAS and BLiMP vs step, mean over seeds with a min-max band,
    one colour per variant. ``logs``: tidy metrics with ``variant``, ``seed``, ``step``, ``eval_loss``,
    ``sas_uas``, ``blimp_mean``. Clicking a legend entry highlights one variant."""
    d = logs[logs[by].isin(variants)]
    sel = _legend_selection(by)
    opacity = alt.condition(sel, alt.value(1.0), alt.value(0.12))
    rows = []
    for col, title in [("eval_loss", "held-out MLM loss"), ("sas_uas", "SAS (best-head UAS)"),
                       ("blimp_mean", "BLiMP mean")]:
        if col not in d or d[col].notna().sum() == 0:
            continue
        g = d[[by, "step", col]].dropna().groupby([by, "step"])[col].agg(["mean", "min", "max", "count"]).reset_index()
        color = alt.Color(f"{by}:N", sort=list(variants), legend=alt.Legend(orient="bottom", title=None))
        band = alt.Chart(g).mark_area(opacity=0.2).encode(x="step:Q", y=alt.Y("min:Q", title=title,
                                                                               scale=alt.Scale(zero=False)),
                                                          y2="max:Q", color=color, opacity=opacity)
        line = alt.Chart(g).mark_line(point=True).encode(
            x="step:Q", y=alt.Y("mean:Q", title=title, scale=alt.Scale(zero=False)), color=color, opacity=opacity,
            tooltip=[by, "step", alt.Tooltip("mean:Q", format=".4f"), alt.Tooltip("min:Q", format=".4f"),
                     alt.Tooltip("max:Q", format=".4f"), alt.Tooltip("count:Q", title="seeds")])
        if not rows:
            line = line.add_params(sel)
        rows.append(alt.layer(band, line).properties(width=560, height=150))
    return alt.vconcat(*rows).resolve_scale(x="shared")


def release(reports, base: str = "Base"):
    """The paper's release figure: final loss and BLiMP against the release step k of SAS−(k)
    (points = seeds, line = mean), with Base's mean as a dashed rule. ``reports``: one row per run with
    ``variant``, ``seed``, ``final_loss``, ``final_blimp`` (:func:`sasutils.claims.reports`)."""
    import pandas as pd

    from .claims import release_step

    r = reports.assign(k=reports.variant.map(release_step))
    ks = r.dropna(subset=["k"])
    b = r[r.variant == base]
    charts = []
    for col, title in [("final_loss", "final MLM loss"), ("final_blimp", "final BLiMP mean")]:
        pts = alt.Chart(ks).mark_point(filled=True, opacity=0.6).encode(
            x=alt.X("k:Q", title="release step k of SAS−(k)"), y=alt.Y(f"{col}:Q", title=title, scale=alt.Scale(zero=False)),
            tooltip=["variant", "seed", alt.Tooltip(f"{col}:Q", format=".4f")])
        mean = alt.Chart(ks.groupby("k", as_index=False)[col].mean()).mark_line().encode(x="k:Q", y=f"{col}:Q")
        rule = alt.Chart(pd.DataFrame({"y": [b[col].mean()], "label": [f"{base} (mean of {len(b)} seeds)"]})).mark_rule(
            strokeDash=[5, 4], color="black").encode(y="y:Q", tooltip=["label", alt.Tooltip("y:Q", format=".4f")])
        charts.append(alt.layer(pts, mean, rule).properties(width=260, height=200))
    return alt.hconcat(*charts)


def position_ablation(table, by: str = "run"):
    """SAS with and without word order against step, from :func:`sasutils.measure.position_ablation` rows.

    Top: the SAS scalar (solid) and the same with the position table replaced by its mean row (dashed), the
    median over the rows of each ``by`` value, with the uniform-attention floor (grey dotted,
    :func:`sasutils.sas.uniform_baseline`). Bottom, where the table has losses: what the model gains from word
    order, ``blind_loss - eval_loss`` (nats; per row, then the median)."""
    import pandas as pd

    if "blind_loss" in table:  # per run first: the median of the differences, as the text quotes it
        table = table.assign(gain=table.blind_loss - table.eval_loss)
    cols = [c for c in ("sas_uas", "blind_uas", "uniform_uas", "gain") if c in table]
    med = table.groupby([by, "step"], as_index=False)[cols].median()
    long = pd.concat([med[[by, "step"]].assign(reading=name, uas=med[col])
                      for col, name in [("sas_uas", "with word order"), ("blind_uas", "position-blind")]])
    sel, opacity, colour = _legend_encodings(by)
    top = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("step:Q"), y=alt.Y("uas:Q", title="SAS (best-head UAS)", scale=alt.Scale(zero=False)),
        color=colour, strokeDash=alt.StrokeDash("reading:N", legend=alt.Legend(orient="bottom", title=None)),
        opacity=opacity, tooltip=[by, "reading", "step", alt.Tooltip("uas:Q", format=".3f")]).add_params(sel)
    floor = alt.Chart(med.groupby(by, as_index=False).uniform_uas.first()).mark_rule(strokeDash=[1, 3], color="grey").encode(
        y="uniform_uas:Q", opacity=opacity, tooltip=[by, alt.Tooltip("uniform_uas:Q", title="uniform-attention UAS", format=".3f")])
    panels = [alt.layer(top, floor).properties(width=560, height=170)]
    if "gain" in med and med.gain.notna().any():
        gain = med.dropna(subset=["gain"])
        panels.append(alt.Chart(gain).mark_line(point=True).encode(
            x=alt.X("step:Q"), y=alt.Y("gain:Q", title="loss without order − with (nats)"), color=colour,
            opacity=opacity, tooltip=[by, "step", alt.Tooltip("gain:Q", format=".3f")]).properties(width=560, height=120))
    return alt.vconcat(*panels).resolve_scale(x="shared")


def extended_positions(table, by: str = "run"):
    """Two readings of the SAS scalar against step, from :func:`sasutils.measure.extended_positions_reading` rows.

    Solid: the project's reading (the sentences that fit the run's rows); dashed: every sentence, with the
    position table grown by untrained rows. Dotted rules: each reading's uniform-attention floor
    (:func:`sasutils.sas.uniform_baseline`); red: the "SAS <= 0.15 before" threshold
    (:data:`sasutils.onsets.UAS_BEFORE_MAX`). One line per ``by`` value: the median over its rows at each step."""
    import pandas as pd

    from .onsets import UAS_BEFORE_MAX

    cols = ["sas_uas", "wide_uas", "uniform_uas", "wide_uniform_uas"]
    med = table.groupby([by, "step"], as_index=False)[cols].median()
    names = [("sas_uas", "uniform_uas", "sentences that fit"), ("wide_uas", "wide_uniform_uas", "every sentence")]
    long = pd.concat([med[[by, "step"]].assign(reading=name, uas=med[col]) for col, _, name in names])
    floors = pd.concat([med.groupby(by, as_index=False)[f].first().rename(columns={f: "uas"}).assign(reading=name)
                        for _, f, name in names])
    sel, opacity, colour = _legend_encodings(by)
    dash = alt.StrokeDash("reading:N", legend=alt.Legend(orient="bottom", title=None))
    lines = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("step:Q"), y=alt.Y("uas:Q", title="SAS (best-head UAS)", scale=alt.Scale(zero=False)),
        color=colour, strokeDash=dash, opacity=opacity,
        tooltip=[by, "reading", "step", alt.Tooltip("uas:Q", format=".3f")]).add_params(sel)
    floor = alt.Chart(floors).mark_rule(strokeDash=[1, 3], color="grey").encode(
        y="uas:Q", opacity=opacity, tooltip=[by, "reading", alt.Tooltip("uas:Q", title="uniform-attention UAS", format=".3f")])
    limit = alt.Chart(pd.DataFrame({"uas": [UAS_BEFORE_MAX]})).mark_rule(color="red", strokeDash=[4, 2]).encode(
        y="uas:Q", tooltip=[alt.Tooltip("uas:Q", title="SAS <= this before the transition")])
    return alt.layer(lines, floor, limit).properties(width=560, height=220)


def attention_scale(table, logs=None, by: str = "run"):
    """How far attention is from uniform against step, from :func:`sasutils.measure.attention_scale` rows.

    Left: ``logit_spread`` (log scale), the standard deviation of a head's pre-softmax logits over the keys, the mean over
    every head at each checkpoint; right (with ``logs``, the runs' metrics): the SAS scalar over the same steps, so a
    reader can see whether SAS waits for the attention to leave uniform. One line per ``by`` value; clicking the legend
    highlights it in both panels."""
    spread = table.groupby([by, "step"], as_index=False)["logit_spread"].mean()
    sel, opacity, colour = _legend_encodings(by)
    x = alt.X("step:Q", scale=alt.Scale(type="symlog"))
    left = alt.Chart(spread).mark_line(point=True).encode(
        x=x, y=alt.Y("logit_spread:Q", title="attention-logit spread (std over keys)", scale=alt.Scale(type="log")),
        color=colour, opacity=opacity,
        tooltip=[by, "step", alt.Tooltip("logit_spread:Q", format=".4f")]).add_params(sel).properties(width=270, height=220)
    if logs is None:
        return left
    sas_log = logs[logs[by].isin(set(table[by])) & logs.sas_uas.notna() & (logs.step <= table.step.max())]
    right = alt.Chart(sas_log[[by, "step", "sas_uas"]]).mark_line(point=True).encode(
        x=x, y=alt.Y("sas_uas:Q", title="SAS (best-head UAS)", scale=alt.Scale(zero=False)),
        color=colour, opacity=opacity,  # the legend selection is the left panel's: added once, used by both
        tooltip=[by, "step", alt.Tooltip("sas_uas:Q", format=".3f")]).properties(width=270, height=220)
    return alt.hconcat(left, right)


def word_rules(readings, by: str = "run"):
    """The SAS scalar under both rules for attention to a word, from :func:`sasutils.measure.word_rule_readings` rows.

    One panel per rule (``to``: summed over the word's pieces, the SAS scalar as logged; averaged over them), SAS
    against step, one line per ``by`` value (clicking the legend highlights it in both panels); grey dashed: a
    uniform head under that rule with ties broken at random (``uniform_uas_random``, the median over the runs), the
    level a plateau's SAS starts from -- under the averaged rule, where every candidate ties, chance among the other
    words (first-index ties would put it lower, at the share of words whose parent is the first word)."""
    import pandas as pd

    from .sas import TO_WORD

    sel, opacity, colour = _legend_encodings(by)
    floor = readings.groupby("to", as_index=False)["uniform_uas_random"].median()
    panels = []
    for i, to in enumerate(t for t in TO_WORD if t in set(readings.to)):  # the logged rule first
        d = readings[readings.to == to]
        title = "SAS, attention to a word summed over its pieces" if to == "sum" else f"SAS, attention to a word: {to} over its pieces"
        line = alt.Chart(d[[by, "step", "sas_uas", "sas_head"]]).mark_line(point=True).encode(
            x="step:Q", y=alt.Y("sas_uas:Q", title=title, scale=alt.Scale(domain=[0, max(0.45, float(readings.sas_uas.max()))])),
            color=colour, opacity=opacity, tooltip=[by, "step", alt.Tooltip("sas_uas:Q", format=".3f"), "sas_head"])
        if i == 0:
            line = line.add_params(sel)  # the legend selection once, used by both panels
        rule = alt.Chart(pd.DataFrame(floor[floor.to == to])).mark_rule(strokeDash=[4, 4], color="grey").encode(
            y="uniform_uas_random:Q",
            tooltip=[alt.Tooltip("uniform_uas_random:Q", format=".3f", title="uniform head, random ties")])
        panels.append((line + rule).properties(width=270, height=220))
    return alt.hconcat(*panels)


def head_heatmap(uas, run: str | None = None, relation: str = "all"):
    """UAS of every (layer, head) in both directions, with a slider over checkpoints (client-side)."""
    d = uas[(uas.layer >= 0) & (uas.relation == relation)]
    if run is None and "run" in d:
        run = d.run.iloc[0]
    if run is not None and "run" in d:
        d = d[d.run == run]
    d = d[["step", "layer", "head", "direction", "uas"]]
    steps = sorted(d.step.unique())
    slider = alt.binding_range(min=0, max=len(steps) - 1, step=1, name="checkpoint index ")
    idx = alt.param(name="ckpt", value=len(steps) - 1, bind=slider)
    d = d.assign(ckpt=d.step.map({s: i for i, s in enumerate(steps)}))
    return alt.Chart(d).mark_rect().encode(
        x=alt.X("head:O"), y=alt.Y("layer:O"), color=alt.Color("uas:Q", scale=alt.Scale(domain=[0, 0.6])),
        column=alt.Column("direction:N"), tooltip=["step", "layer", "head", "direction",
                                                    alt.Tooltip("uas:Q", format=".3f")],
    ).add_params(idx).transform_filter(alt.datum.ckpt == idx).properties(
        width=160, height=90, title=f"{run or ''}: UAS per head ({relation})")


def relation_curves(best, run: str | None = None):
    """Best-head UAS per relation (solid) and its best fixed-offset baseline (dashed) vs step."""
    import pandas as pd

    d = best if run is None or "run" not in best else best[best.run == run]
    if "run" in d and run is None and d.run.nunique() > 1:
        d = d[d.run == d.run.iloc[0]]
    long = pd.concat([d.assign(kind="best head", value=d.best_head), d.assign(kind="best offset", value=d.best_offset)])
    sel = alt.selection_point(fields=["relation"], bind="legend")
    return alt.Chart(long).mark_line(point=True).encode(
        x="step:Q", y=alt.Y("value:Q", title="UAS"), color="relation:N",
        strokeDash=alt.StrokeDash("kind:N"), opacity=alt.condition(sel, alt.value(1), alt.value(0.1)),
        tooltip=["relation", "kind", "step", alt.Tooltip("value:Q", format=".3f")],
    ).add_params(sel).properties(width=560, height=260)



def head_positions(heads, by: str = "run", step: int | None = None):
    """Positional or not: every head (both directions) at one checkpoint, UAS against the share of its
    predicted parents at its most frequent offset (:func:`sasutils.sas.positional_share`; 1 = a fixed-offset
    head). ``heads``: :func:`sasutils.measure.offset_profiles` rows; ``step``: None = each ``by`` value's last.
    Heads high and to the left point at parents wherever they are; click the legend to highlight."""
    d = heads if step is None else heads[heads.step == step]
    if step is None and "step" in d:
        d = d[d.step == d.groupby(by).step.transform("max")]
    sel = _legend_selection(by)
    return alt.Chart(d).mark_point(filled=True, size=45).encode(
        x=alt.X("share:Q", title="share of predictions at the modal offset", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("uas:Q", title="UAS (all words)"),
        color=alt.Color(f"{by}:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=500)),
        shape=alt.Shape("direction:N"), opacity=alt.condition(sel, alt.value(0.9), alt.value(0.1)),
        tooltip=[by, "step", "layer", "head", "direction", "modal_offset", alt.Tooltip("share:Q", format=".2f"),
                 alt.Tooltip("uas:Q", format=".3f"), alt.Tooltip("uas_off_mode:Q", format=".3f")],
    ).add_params(sel).properties(width=520, height=300)


def held_out_margins(held, relations=("all", "nsubj", "obj", "case", "det", "amod"), by: str = "run"):
    """Per relation, the chosen head's UAS minus the chosen offset's on held-out sentences, against step
    (:func:`sasutils.measure.held_out_relations`): one line per ``by`` value, a panel per relation; above
    the zero line a head follows that relation beyond every fixed offset. Click the legend to highlight."""
    d = held[held.relation.isin(relations)]
    sel = _legend_selection(by)
    lines = alt.Chart().mark_line(point=True).encode(
        x=alt.X("step:Q"), y=alt.Y("margin:Q", title="head − offset UAS (held out)"),
        color=alt.Color(f"{by}:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=500)),
        opacity=alt.condition(sel, alt.value(0.9), alt.value(0.1)),
        tooltip=[by, "relation", "step", "best_head", "offset", alt.Tooltip("head_uas:Q", format=".3f"),
                 alt.Tooltip("offset_uas:Q", format=".3f"), alt.Tooltip("margin:Q", format="+.3f")],
    ).add_params(sel)
    zero = alt.Chart().mark_rule(color="grey", strokeDash=[4, 3]).encode(y=alt.datum(0))
    return alt.layer(lines, zero, data=d).properties(width=250, height=160).facet(
        facet=alt.Facet("relation:N", sort=list(relations)), columns=3)


def attention_arc_chart(arcs, title: str | None = None, width: int | None = None):
    """The paper's Figure 1 as an explorer: one sentence's gold parse above its words, one head's
    strongest attention arcs below, chosen in the page (sentence and head dropdowns, layer slider,
    direction radio buttons).

    ``arcs``: :func:`sasutils.sas.attention_arcs`. Gold arcs (grey) run from each word to its parent,
    the parent end marked by a triangle; ROOT is a vertical stroke. Below, the selected head's
    predicted parent of each word: green when it is the gold parent, red when not, grey for the root
    word (which has none); line width = attention weight. Hover an arc for words and weights.
    The chart opens on the head with the highest share of correct arcs over the given sentences.
    The data embedded are one row per arc; the curves are computed in the page.
    """
    import pandas as pd

    need = set(_ARC_FIELDS)
    missing = need - set(arcs.columns)
    if missing:
        raise ValueError(f"arcs lacks columns {sorted(missing)} (make it with sasutils.sas.attention_arcs)")
    if not len(arcs):
        raise ValueError("arcs is empty")
    sentences = list(dict.fromkeys(arcs["sentence"].tolist()))  # first-seen order
    # one row per word (gold arcs, labels) and one per predicted arc (numbers only; words looked up)
    words = arcs.drop_duplicates(["sentence", "i"])[["sentence", "i", "word", "relation", "gold"]].copy()
    words["key"] = words.sentence.astype(int) * 1000 + words.i.astype(int)  # sentences have < 1000 words
    parent = dict(zip(words.key, words.word))
    words["parent"] = [parent.get(s * 1000 + g, "ROOT") for s, g in zip(words.sentence, words.gold)]
    pred = arcs.loc[arcs.j >= 0, ["sentence", "layer", "head", "direction", "i", "j", "gold", "weight",
                                  "gold_weight", "is_gold"]]
    pred = pred.astype({"weight": "float64", "gold_weight": "float64"}).round({"weight": 3, "gold_weight": 3})
    gold = words[words.gold >= 0].rename(columns={"gold": "j"})
    root = words[words.gold < 0]

    # geometry in word units: y = 0 is the line of words, arcs rise with their span
    base, rise = 0.45, 0.3
    span = pd.concat([pred.j - pred.i, gold.j - gold.i]).abs().max()
    span = int(span) if pd.notna(span) and span > 0 else 1
    ymax = base + rise * (0.5 + span) + 0.3
    x = alt.X("x:Q", scale=alt.Scale(zero=False, nice=False, padding=18), axis=None)
    y = alt.Y("y:Q", scale=alt.Scale(domain=[-ymax, ymax], nice=False), axis=None)

    def curve(chart, side: int):
        """21 points per arc from word i to word j (made in the page, so the data stay small)."""
        return chart.transform_calculate(t="sequence(0, 1.0001, 0.05)").transform_flatten(["t"]).transform_calculate(
            x="datum.i + (datum.j - datum.i) * datum.t",
            y=f"{side} * ({base} + {rise} * (0.5 + abs(datum.j - datum.i)) * 4 * datum.t * (1 - datum.t))")

    def at(chart, x_field: str, y_value: float):
        return chart.transform_calculate(x=f"datum.{x_field}", y=str(y_value))

    # the choices, made in the page; they open on the best (layer, head, direction) for these sentences
    best = arcs[arcs.gold >= 0].groupby(["layer", "head", "direction"]).is_gold.mean().idxmax()
    labels = []
    for s in sentences:
        text = " ".join(words[words.sentence == s].sort_values("i").word)
        labels.append(f"{s}: {text[:60]}{'…' if len(text) > 60 else ''}")
    n_layers, n_heads = int(arcs.layer.max()) + 1, int(arcs["head"].max()) + 1
    p_sent = alt.param(name="sentence", value=sentences[0],
                       bind=alt.binding_select(options=sentences, labels=labels, name="sentence "))
    p_layer = alt.param(name="layer", value=int(best[0]),
                        bind=alt.binding_range(min=0, max=max(n_layers - 1, 0), step=1, name="layer "))
    p_head = alt.param(name="head", value=int(best[1]),
                       bind=alt.binding_select(options=list(range(n_heads)), name="head "))
    p_dir = alt.param(name="direction", value=best[2],
                      bind=alt.binding_radio(options=sorted(arcs.direction.unique()), name="direction "))
    in_sentence = alt.datum.sentence == p_sent
    chosen = in_sentence & (alt.datum.layer == p_layer) & (alt.datum.head == p_head) & (alt.datum.direction == p_dir)

    grey = "#555"
    gold_base = alt.Chart(gold).transform_filter(in_sentence)
    gold_tips = ["word:N", "relation:N", alt.Tooltip("parent:N", title="gold parent")]
    gold_arcs = curve(gold_base, +1).mark_line(color=grey, strokeWidth=1.5).encode(
        x=x, y=y, detail="i:N", order="t:Q", tooltip=gold_tips)
    gold_ends = at(gold_base, "j", base).mark_point(shape="triangle-down", filled=True, color=grey, size=40).encode(
        x=x, y=y, tooltip=gold_tips)
    root_base = alt.Chart(root).transform_filter(in_sentence)
    root_rule = at(root_base, "i", base).transform_calculate(y2=str(ymax * 0.8)).mark_rule(
        color=grey, strokeWidth=1.5).encode(x=x, y=y, y2="y2:Q")
    root_text = at(root_base, "i", ymax * 0.87).mark_text(text="ROOT", fontSize=10, color=grey).encode(x=x, y=y)
    text = at(alt.Chart(words).transform_filter(in_sentence), "i", 0).mark_text(fontSize=12).encode(
        x=x, y=y, text="word:N", tooltip=["i:Q", "word:N", "relation:N", alt.Tooltip("parent:N", title="gold parent")])

    def lookup(key: str, out: str):
        return dict(lookup=key, from_=alt.LookupData(words, key="key", fields=["word"]), as_=[out])

    pred_base = alt.Chart(pred).transform_filter(chosen).transform_calculate(
        status="datum.gold < 0 ? 'root word (no parent)' : datum.is_gold ? 'correct' : 'wrong'",
        ikey="datum.sentence * 1000 + datum.i", jkey="datum.sentence * 1000 + datum.j",
        gkey="datum.sentence * 1000 + datum.gold",
    ).transform_lookup(**lookup("ikey", "word")).transform_lookup(**lookup("jkey", "attended")).transform_lookup(
        **lookup("gkey", "gold parent"))
    colour = alt.Color("status:N", title="predicted arc", legend=alt.Legend(orient="bottom"), scale=alt.Scale(
        domain=["correct", "wrong", "root word (no parent)"], range=["#2a9d3f", "#d62728", "#aaaaaa"]))
    pred_tips = ["word:N", alt.Tooltip("attended:N", title="predicted parent"),
                 alt.Tooltip("weight:Q", format=".3f", title="attention"), alt.Tooltip("gold parent:N"),
                 alt.Tooltip("gold_weight:Q", format=".3f", title="attention on gold arc"), "status:N"]
    pred_arcs = curve(pred_base, -1).mark_line().encode(
        x=x, y=y, detail="i:N", order="t:Q", color=colour, tooltip=pred_tips,
        strokeWidth=alt.StrokeWidth("weight:Q", scale=alt.Scale(domain=[0, 1], range=[0.8, 5]), legend=None))
    pred_ends = at(pred_base, "j", -base).mark_point(shape="triangle-up", filled=True, size=40).encode(
        x=x, y=y, color=colour, tooltip=pred_tips)

    w = width or int(min(1100, max(420, 48 * words.groupby("sentence").size().max())))
    return alt.layer(gold_arcs, gold_ends, root_rule, root_text, pred_arcs, pred_ends, text).add_params(
        p_sent, p_layer, p_head, p_dir).properties(
        width=w, height=320, view=alt.ViewBackground(stroke=None),
        title=title or "gold parse (above) and the chosen head's strongest attention (below)")


_ARC_FIELDS = ("sentence", "layer", "head", "direction", "i", "word", "relation", "gold", "j", "weight",
               "gold_weight", "is_gold")
