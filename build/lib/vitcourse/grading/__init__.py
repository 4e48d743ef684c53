"""The instructor's autograder: hidden tests run on the trusted side, student code in a sandbox.

``vitcourse grade --exercise ID SUBMISSIONS... --out DIR`` (``command``) loads the exercise's
hidden tests (``runner``; the API they use is ``hidden``) and grades each notebook:

- ``notebook`` turns a notebook into its code cells (IPython syntax made harmless);
- ``sandbox`` starts one pre-imported worker template per job (``worker``, inside bubblewrap
  where it works) which forks a fresh, rlimited child per submission;
- the hidden tests reach the student's code only through ``proxy.Student`` over the data-only
  ``channel``; ``calls`` is what the child does with each request;
- ``gradebook`` stores every submission in one SQLite transaction and exports grades.csv and
  Gradescope's results.json; ``gradescope`` builds the autograder zip;
- ``direct`` runs a notebook in-process for ``pytest tests/hidden`` (no sandbox).

Nothing outside ``cli`` imports this package.
"""
