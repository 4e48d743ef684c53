"""A hidden test that reports what a submission's code could see and touch from its sandbox.

Used only by the grader's own tests: the paths to probe come from the environment variable
VITCOURSE_PROBE (a JSON object), and the findings come back as this test's feedback.
"""

import json
import os

from vitcourse.grading.hidden import GradingFailure, points

EXERCISE = "00_probe"


@points(1)
def test_probe(student):
    """Report what the sandbox lets the student's code do."""
    targets = json.loads(os.environ["VITCOURSE_PROBE"])
    report = {"read": student.call("probe", targets["read"]),
              "write": student.call("try_write", targets["write"]),
              "network": student.call("try_network"),
              "interfaces": student.call("interfaces"),
              "env": student.call("env"),
              "uid": student.call("uid"),
              "pids": student.call("pids")}
    raise GradingFailure("PROBE" + json.dumps(report))
