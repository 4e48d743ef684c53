"""Gradescope's results.json, as its autograder specification documents it
(https://gradescope-autograders.readthedocs.io/en/latest/specs/, "Output format"), as a JSON
Schema: every field it names, with the values it allows, and nothing else."""

from __future__ import annotations

VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "simple_format", "html", "md", "ansi"]}
NUMBER = {"type": "number"}
TEXT = {"type": "string"}

TEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "score": NUMBER, "max_score": NUMBER, "status": {"enum": ["passed", "failed"]},
        "name": TEXT, "name_format": FORMAT, "number": TEXT, "output": TEXT,
        "output_format": FORMAT, "tags": {"type": "array", "items": TEXT},
        "visibility": VISIBILITY, "extra_data": {"type": "object"},
    },
}

LEADER = {
    "type": "object",
    "required": ["name", "value"],
    "additionalProperties": False,
    "properties": {"name": TEXT, "value": {"type": ["number", "string"]},
                   "order": {"enum": ["asc", "desc"]}},
}

RESULTS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "score": NUMBER, "execution_time": NUMBER, "output": TEXT, "output_format": FORMAT,
        "test_output_format": FORMAT, "test_name_format": FORMAT, "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY, "extra_data": {"type": "object"},
        "tests": {"type": "array", "items": TEST},
        "leaderboard": {"type": "array", "items": LEADER},
    },
    # "score": optional, but required if not on each test case
    "anyOf": [{"required": ["score"]},
              {"required": ["tests"],
               "properties": {"tests": {"items": {"required": ["score"]}}}}],
}


def validate(results: dict) -> None:
    """Raise jsonschema.ValidationError unless ``results`` is a results.json Gradescope accepts."""
    import jsonschema

    jsonschema.validate(results, RESULTS)
