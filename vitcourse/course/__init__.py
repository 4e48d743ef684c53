"""The course's own tooling: what the pages and exercises use besides the ViT library.

- ``checks``: ``check(name, obj)``, the exercises' visible self-checks;
- ``claims``: a page's conclusions checked in code (``claim``, ``seed_summary``, ...);
- ``source``: ``show_source(obj)``, the package's own code on a page;
- ``release``: ``vitcourse release``, exercises/ generated from solutions/;
- ``stamp``: ``vitcourse stamp``, every notebook's Colab badge and install cell.
"""
