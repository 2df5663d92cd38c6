"""Reporting: what the README and the notebooks show of the committed results files.

:mod:`.views` turns one results file (a JSON report, a benchmark) into Markdown, tables and the comparative
sentences under them computed from the same numbers; :mod:`.readme` fills README.md's include blocks with
them (``python -m mango_lite.reporting.readme``). This layer sits above the figures and beside the notebook
helpers: it reads what training wrote and never trains.
"""
