"""Live explorers for Jupyter: pick a checkpoint and sentences, see every head's attention arcs.

The book cannot run a model, so it shows the static fallback -- :func:`sasutils.plots.attention_arc_chart`
of one checkpoint, whose sentence / layer / head / direction choices work in the page. In Jupyter,
:func:`attention_explorer` adds what needs the model: the checkpoint (training step) and the sentence set
are chosen with ipywidgets, and the arcs are recomputed from the checkpoint on demand (cached per choice).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


class ArcSource:
    """Attention arcs of ``run_dir``'s checkpoints on sentences of ``treebank`` (computed on demand, cached).

    ``min_words``/``max_words``: which sentences are eligible (short ones draw legibly); ``per_page``:
    how many sentences one view holds.
    """

    def __init__(self, run_dir: str | Path, treebank: str = "ewt-dev", data_dir=None, min_words: int = 6,
                 max_words: int = 12, per_page: int = 6):
        from . import train as T
        from .treebank import load_treebank

        self.run_dir = Path(run_dir)
        self.checkpoints = dict(T.list_checkpoints(self.run_dir))
        if not self.checkpoints:
            raise FileNotFoundError(f"{self.run_dir} holds no checkpoints (train it first)")
        self.sentences = [s for s in load_treebank(treebank, data_dir) if min_words <= len(s) <= max_words]
        if not self.sentences:
            raise ValueError(f"{treebank} has no sentences of {min_words}..{max_words} words")
        self.per_page = per_page
        self._cache: dict[tuple[int, int], pd.DataFrame] = {}

    @property
    def steps(self) -> list[int]:
        return sorted(self.checkpoints)

    @property
    def pages(self) -> int:
        return (len(self.sentences) + self.per_page - 1) // self.per_page

    def arcs(self, step: int, page: int = 0) -> pd.DataFrame:
        """:func:`sasutils.sas.attention_arcs` for checkpoint ``step`` and sentence page ``page``."""
        from . import sas
        from . import train as T

        if step not in self.checkpoints:
            raise ValueError(f"no checkpoint at step {step} in {self.run_dir}; steps: {self.steps}")
        if not 0 <= page < self.pages:
            raise ValueError(f"page must be in 0..{self.pages - 1}, got {page}")
        key = (step, page)
        if key not in self._cache:
            model, tok = T.load_checkpoint(self.checkpoints[step])
            sents = self.sentences[page * self.per_page:(page + 1) * self.per_page]
            enc = sas.encode_treebank(sents, tok, model.config.max_position_embeddings)
            self._cache[key] = sas.attention_arcs(model, enc, range(len(sents)), sents).assign(
                run=self.run_dir.name, step=step)
        return self._cache[key]


def attention_explorer(run_dir: str | Path | ArcSource, treebank: str = "ewt-dev", data_dir=None, **kw):
    """An ipywidgets explorer (checkpoint slider x sentence page) around the arc chart; returns the widget.

    ``run_dir`` may be an :class:`ArcSource` already in use (its computed arcs are reused).
    Needs a live kernel; in a static page, show :func:`sasutils.plots.attention_arc_chart` instead.
    """
    import ipywidgets as w
    from IPython.display import display

    from .plots import attention_arc_chart

    src = run_dir if isinstance(run_dir, ArcSource) else ArcSource(run_dir, treebank, data_dir, **kw)
    step = w.SelectionSlider(options=src.steps, value=src.steps[-1], description="step", continuous_update=False)
    page = w.IntSlider(value=0, min=0, max=src.pages - 1, description="sentences", continuous_update=False)
    out = w.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            display(attention_arc_chart(src.arcs(step.value, page.value),
                                        title=f"{src.run_dir.name}, step {step.value}, page {page.value}"))

    step.observe(draw, "value")
    page.observe(draw, "value")
    draw()
    return w.VBox([w.HBox([step, page]), out])
