"""sasutils: a small library for reproducing Chen et al. (ICLR 2024),
*Sudden Drops in the Loss: Syntax Acquisition, Phase Transitions, and Simplicity Bias in MLMs*.

Modules (one concept each):

- :mod:`sasutils.paths`        -- the data / cache directory settings
- :mod:`sasutils.treebank`     -- dependency-parsed sentences: CoNLL-U (UD EWT, GUM), PTB-WSJ .dp
- :mod:`sasutils.blimp`        -- BLiMP minimal pairs and pseudo-log-likelihood scoring
- :mod:`sasutils.corpus`       -- training text, spaCy parses (cached), UD conversion, MLM packing
- :mod:`sasutils.tokenizer`    -- WordPiece training / loading
- :mod:`sasutils.model`        -- BERT presets and the masked-positions-only MLM loss
- :mod:`sasutils.regularizer`  -- the syntactic regularizer (SAS+ / SAS-)
- :mod:`sasutils.sas`          -- Syntactic Attention Structure: UAS of attention vs. parses
- :mod:`sasutils.onsets`       -- phase-transition (onset) detection on metric curves
- :mod:`sasutils.train`        -- the training loop, checkpoints, metric callbacks
- :mod:`sasutils.measure`      -- scoring every checkpoint of a run (UAS tables, BLiMP)
- :mod:`sasutils.experiments`  -- runs and grids by name; collecting finished runs
- :mod:`sasutils.sweep`        -- many runs in parallel worker processes (a plan, a deadline)
- :mod:`sasutils.claims`       -- the paper's five claims tested on intervention runs
- :mod:`sasutils.explore`      -- live ipywidgets explorers (checkpoint x sentence x head)
- :mod:`sasutils.plots`        -- Altair figures (offline rendering)
"""

__version__ = "0.1.0"
