"""The course's own tooling: what the pages and exercises use besides the ViT library.

- ``contracts``: an exercise's contract (names, clauses with points, common mistakes), written
  once and used twice, by ``check()`` and by the grader's hidden tests;
- ``exercises``: the contracts, one module per exercise;
- ``expectations``: how an answer is compared with the expected one (``expect_tensor``, the one
  tolerance rule, the failure types), shared by ``check()`` and the grader;
- ``values``: which values pass between a student's code and the checks (plain data only);
- ``checks``: ``check(name, obj)``, the exercises' visible self-checks;
- ``stubs``: the stubs ``release`` writes, and ``implemented(...)`` for an exercise's experiment;
- ``claims``: a page's conclusions checked in code (``claim``, ``seed_summary``, ...);
- ``source``: ``show_source(obj)``, the package's own code on a page;
- ``release``: ``vitcourse release``, exercises/ generated from solutions/;
- ``stamp``: ``vitcourse stamp``, every notebook's Colab badge and install cell.
"""
