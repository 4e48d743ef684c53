"""The trusted side: what runs in the grader's own process, never beside student code.

- ``suites``: load an exercise's hidden tests (the checks they use, ``expect_*``, live in
  ``vitcourse.course.expectations``, shared with the visible ``check()``);
- ``scoring``: grade one submission with them, test by test; ``proxy``: the ``student`` object
  they call, which checks every reply;
- ``sandbox``: start and drive the sandboxed worker (bubblewrap, limits); ``modes``: which
  sandbox, or a refusal; ``leftovers``: no process a submission starts outlives the batch;
- ``gradebook``: SQLite and its exports; ``integrity``: tamper evidence; ``errors``: why the
  grader stops.

Nothing here is imported by ``untrusted``; importing this package itself costs nothing.
"""
