# Build the book, run the tests. `pip install -e ".[dev]"` first (PYTHONPATH below also covers an
# uninstalled checkout: the book's notebook kernels and Sphinx autodoc both import sasutils).
SHELL := /bin/bash
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: book test clean-book

book:  ## build the Jupyter Book into _build/html (chapters executed, cached in _build/.jupyter_cache)
	time jupyter-book build .

test:  ## unit tests, notebooks and the browser test of the built book (the README's test command)
	python -m pytest --nbmake

clean-book:  ## remove the built book and its execution cache
	jupyter-book clean --all .
