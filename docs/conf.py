"""Sphinx configuration of shoal's architecture documents (MyST Markdown + Mermaid)."""

project = "shoal"
author = "the shoal team"
copyright = "the shoal team"

extensions = ["myst_parser", "sphinxcontrib.mermaid"]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# ```mermaid fences render like ```{mermaid} directives; headings get anchors for links.
myst_fence_as_directive = ["mermaid"]
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

html_theme = "alabaster"
html_title = "shoal architecture"
