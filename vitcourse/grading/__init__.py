"""The instructor's autograder: hidden tests run on the trusted side, student code in a sandbox.

``vitcourse grade --exercise ID SUBMISSIONS... --out DIR`` (``command``) grades a batch
(``batch``); ``vitcourse grade --gradescope-bundle ID`` builds Gradescope's autograder
(``gradescope``). The trust boundary is the layout:

- ``trusted/``: the grader's own process: hidden tests, scoring, the gradebook, tamper evidence,
  the sandbox's control;
- ``untrusted/``: the sandboxed worker, where student code runs: cells, calls, reference guards;
- between them, and used by both: ``wire`` (framing), ``notebooks`` (reading an .ipynb),
  ``references`` (the reference answers' names), ``prctl``; which values may cross is
  ``vitcourse.course.values`` (the visible ``check()`` follows the same rules);
- ``hidden``: what hidden-test files import; ``direct``: run a notebook in-process for
  ``pytest tests/hidden`` (no sandbox: the instructor's own solutions only).

Nothing outside ``vitcourse.cli`` imports this package.
"""
