"""Hidden tests for exercise 07 (long range), built from its contract
(``vitcourse.course.exercises.long_range``): the clauses ``check()`` runs in the student's notebook,
on the grader's fresh inputs, with the same points and messages."""

from vitcourse.course.exercises.long_range import CONTRACT

EXERCISE = CONTRACT.exercise
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = CONTRACT.reference_answers

globals().update(CONTRACT.hidden_tests())
