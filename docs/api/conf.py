"""Sphinx configuration of the API reference: ``python -m sphinx -W -b html docs/api OUT``
(tests/test_api_docs.py builds it with warnings as errors)."""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

project = "radsvd"
author = "the radsvd authors"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
exclude_patterns = ["_build"]
html_theme = "alabaster"
suppress_warnings = ["ref.python"]   # cross-references to private modules are not built
