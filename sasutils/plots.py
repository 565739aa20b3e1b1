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
