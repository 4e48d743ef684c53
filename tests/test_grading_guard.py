"""The guard that refuses an exercise's reference answers to graded code (vitcourse.grading.untrusted.guard).

End to end (every exercise, alias and wrapper styles, and through the sandbox) it is tested in
test_exercises_grading.py; here each rule is tried on its own.
"""

from __future__ import annotations

import sys
import textwrap
import types

import pytest
import torch

import vitcourse
import vitcourse.models.patches
import vitcourse.models.vit
from vitcourse.grading.references import ReferenceUseError, validate_reference_answers
from vitcourse.grading.trusted.suites import GraderError, load_hidden_suite
from vitcourse.grading.untrusted.calls import handle
from vitcourse.grading.untrusted.guard import reference_guards

PATCHIFY = {"patchify": "vitcourse.models.patches.patchify"}
BLOCK = {"Block": "vitcourse.models.vit.Block"}
IMAGES = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)


def _cells(source: str, namespace: dict) -> dict:
    """Run ``source`` as one notebook cell would: compiled at module level in ``namespace``."""
    exec(compile(textwrap.dedent(source), "<cell 1>", "exec"), namespace)
    return namespace


def test_a_function_is_refused_to_foreign_code_with_a_message_that_says_what_to_do():
    with reference_guards(PATCHIFY):
        with pytest.raises(ReferenceUseError) as raised:
            vitcourse.models.patches.patchify(IMAGES, 2)
        with pytest.raises(ReferenceUseError):
            vitcourse.patchify(IMAGES, 2)  # the package-level re-export is guarded too
    message = str(raised.value)
    assert "vitcourse.models.patches.patchify" in message and "write patchify yourself" in message


def test_everything_is_put_back_afterwards():
    original, init = vitcourse.models.patches.patchify, vitcourse.models.vit.Block.__dict__["__init__"]
    with reference_guards({**PATCHIFY, **BLOCK}):
        assert vitcourse.patchify is not original
        assert vitcourse.models.vit.Block.__dict__["__init__"] is not init
    assert vitcourse.patchify is original and vitcourse.models.patches.patchify is original
    assert vitcourse.models.vit.Block.__dict__["__init__"] is init
    vitcourse.models.vit.Block(8, 2)  # works again


def test_the_top_level_of_a_cell_may_show_the_reference_but_a_function_may_not_use_it():
    namespace: dict = {"__name__": "__main__", "images": IMAGES}
    expected = vitcourse.models.patches.patchify(IMAGES, 2)
    with reference_guards(PATCHIFY, cells_namespace=namespace):
        _cells("""
            import vitcourse
            from vitcourse.models.patches import patchify as reference
            shown = reference(images, 2)
            also = [reference(images, p) for p in (1, 2)]
            def patchify(images, p):
                return reference(images, p)
            patchify_alias = reference
        """, namespace)
        assert torch.equal(namespace["shown"], expected)
        assert len(namespace["also"]) == 2
        with pytest.raises(ReferenceUseError):
            namespace["patchify"](IMAGES, 2)
        # the grader calls names from vitcourse.grading, which vouches for nothing
        for name in ("patchify", "patchify_alias"):
            reply = handle(namespace, {"op": "call", "name": name, "args": (IMAGES, 2), "kwargs": {}})
            assert reply["ok"] is False and reply["type_name"].endswith(".ReferenceUseError"), reply


def test_package_code_built_on_a_guarded_class_still_works_and_isinstance_holds():
    namespace: dict = {"__name__": "__main__"}
    with reference_guards(BLOCK, cells_namespace=namespace):
        model = vitcourse.create_model("vit_digits")  # builds Blocks from inside the package
        assert isinstance(model.blocks[0], vitcourse.models.vit.Block)
        _cells("""
            import vitcourse.models.vit
            class Block(vitcourse.models.vit.Block):
                pass
            class Wrapping(vitcourse.models.vit.Block):
                def __init__(self, dim, heads):
                    super().__init__(dim, heads)
            def build():
                return vitcourse.models.vit.Block(8, 2)
        """, namespace)
        for name in ("Block", "Wrapping"):
            with pytest.raises(ReferenceUseError):
                namespace[name](8, 2)
        with pytest.raises(ReferenceUseError):
            namespace["build"]()
        reply = handle(namespace, {"op": "module", "name": "Block", "init_args": (8, 2), "init_kwargs": {},
                                   "state_dict": None, "inputs": (torch.zeros(1, 3, 8),), "method": "forward"})
        assert reply["ok"] is False and reply["type_name"].endswith(".ReferenceUseError"), reply


def test_borrowing_a_package_module_name_does_not_make_code_trusted():
    costume = {"__name__": "vitcourse.models.patches"}  # not the real module's namespace
    with reference_guards(PATCHIFY):
        _cells("def sneaky(images):\n    return patchify(images, 2)\n", costume)
        costume["patchify"] = vitcourse.models.patches.patchify
        with pytest.raises(ReferenceUseError):
            costume["sneaky"](IMAGES)


def test_a_trusted_module_may_call_the_references():
    hidden = types.ModuleType("_hidden_tests_for_the_guard")
    _cells("""
        import vitcourse.models.vit
        def make():
            return vitcourse.models.vit.Block(8, 2)
    """, hidden.__dict__)
    with reference_guards(BLOCK, trusted=(hidden,)):
        assert isinstance(hidden.make(), vitcourse.models.vit.Block)
    with reference_guards(BLOCK):
        with pytest.raises(ReferenceUseError):
            hidden.make()


@pytest.mark.parametrize(("answers", "says"), [
    (["vitcourse.models.patches.patchify"], "must map"),
    ({"not a name": "vitcourse.models.patches.patchify"}, "not a Python name"),
    ({"patchify": "torch.nn.functional.unfold"}, "is not a 'vitcourse.<module>.<name>' path"),
    ({"patchify": "vitcourse.models.patches.no_such_function"}, "does not exist"),
    ({"patchify": "vitcourse.no_such_module.patchify"}, "does not exist"),
    ({"eps": "vitcourse.models.vit.LAYER_NORM_EPS"}, "neither a function nor a class"),
])
def test_bad_reference_answers_are_named(answers, says):
    with pytest.raises(ValueError, match=says):
        validate_reference_answers(answers, "test_x.py")


def test_the_grader_refuses_hidden_tests_with_bad_reference_answers(tmp_path):
    (tmp_path / "test_ex.py").write_text(textwrap.dedent("""
        from vitcourse.grading.hidden import points
        EXERCISE = "ex"
        REFERENCE_ANSWERS = {"patchify": "vitcourse.models.patches.patchfy"}

        @points(1)
        def test_one(student):
            pass
    """))
    with pytest.raises(GraderError, match=r"test_ex\.py.*vitcourse\.models\.patches\.patchfy.*does not exist"):
        load_hidden_suite(tmp_path, "ex")
    sys.modules.pop("_vitcourse_hidden_ex", None)
