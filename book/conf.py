"""Sphinx configuration of the mango_lite book: the committed notebooks (with their outputs, never
re-executed here) and the exercise index, rendered by myst-nb.

    make book        # -> build/book/index.html
"""

project = "mango_lite"
author = "mango_lite contributors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "sphinx-mathjax-offline"]
# the API pages document the classes as the package defines them (signatures with their defaults)
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": False}
# the sources are the repository root; only these files belong to the book
root_doc = "book/index"
include_patterns = ["book/index.md", "book/api/*.md", "notebooks/*.ipynb", "notebooks/student/EXERCISES.md"]
exclude_patterns = ["build", "runs", "results", "data", ".git", "**/.ipynb_checkpoints"]
nb_execution_mode = "off"  # the committed outputs of a cpu run are the book's outputs
nb_output_stderr = "remove"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_title = "mango_lite"
html_theme_options = {"description": "MANGO: multimodal fusion by invertible cross-attention, verified and reproduced"}
