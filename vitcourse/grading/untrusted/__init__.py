"""The untrusted side: what runs in the sandboxed worker, in the same process as student code.

- ``worker``: the pre-imported template (zygote) and the child it forks per submission;
- ``cells``: run a notebook's code cells; ``calls``: answer the grader's requests against them;
- ``guard``: keep the package's reference answers from graded code.

Whatever runs here may have been changed by the student's code, so it decides nothing: it only
sends plain data back over the ``wire``, and the trusted side checks every byte. Nothing here
imports ``trusted``.
"""
