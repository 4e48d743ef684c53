"""Each exercise's contract, and the two uses built from it (``vitcourse.course.contracts``).

- a converted exercise's hidden-test file is its contract: the same clauses in the same order,
  with the same points, titles and reference answers;
- the names and signatures a contract declares are the solution's and the generated exercise's;
- points follow what the exercise teaches: clauses that only expect an error carry a small share;
- every common mistake, written as a submission, is named by ``check()`` and by the grader on
  every clause it fails, and no other mistake is;
- ``check()`` and the grader never diverge: the solution, every mistake and other wrong answers
  get the same verdict and the same message from every clause, drawn with the same seed (over
  the grader's data channel in-process, and once through the real sandboxed grader);
- ``LocalStudent`` (``check()``'s side) answers each kind of request as the grader's proxy does;
- with ``--sandbox none`` the grader watches the contracts with the rest of the package.
"""

from __future__ import annotations

import ast
import inspect
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest
import torch

from vitcourse.course.contracts import MISTAKE_PREFIX, LocalStudent
from vitcourse.course.exercises import CONTRACTS
from vitcourse.course.expectations import StudentCrashed, StudentRaised, same_values
from vitcourse.grading.direct import graded_notebook, in_process_student
from vitcourse.grading.notebooks import read_notebook
from vitcourse.grading.trusted import scoring
from vitcourse.grading.trusted.suites import load_hidden_suite
from vitcourse.grading.untrusted.cells import python_source
from vitcourse.grading.untrusted.guard import reference_guards

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ROOT / "tests" / "hidden"
GRADER_SEEDS = (0, 1, 2)
IMPORTS = "import math\nimport torch\nimport torch.nn.functional as F\n"

contracts = pytest.mark.parametrize("contract", list(CONTRACTS.values()), ids=list(CONTRACTS))


# ---- the two uses of one submission -----------------------------------------------------------------


def run_submission(exercise: str, source: str) -> dict:
    """The namespace of ``source`` run as a one-cell submission (its reference answers guarded)."""
    suite = load_hidden_suite(HIDDEN, exercise)
    namespace: dict = {"__name__": f"_submission_{exercise}"}
    with reference_guards(suite.reference_answers, cells_namespace=namespace, trusted=(suite.module,)):
        exec(compile(textwrap.dedent(source), f"<submission for {exercise}>", "exec"), namespace)
    return namespace


def graded(exercise: str, namespace: dict, seed: int) -> dict[str, tuple[str, str]]:
    """clause -> (status, feedback) from the grader's scoring, its student over the data channel."""
    suite = load_hidden_suite(HIDDEN, exercise)
    student = in_process_student(namespace)
    with reference_guards(suite.reference_answers, cells_namespace=namespace, trusted=(suite.module,)):
        results = [scoring.run_test(test, student, None, seed) for test in suite.tests]
    return {r.name.removeprefix("test_"): (r.status, r.feedback) for r in results}


def checked(contract, namespace: dict, seed: int | None = None) -> dict[str, tuple[str, str]]:
    """clause -> (status, message) from check()'s side; with ``seed``, each clause draws the
    inputs the grader draws with that run seed."""
    objects = {name: namespace[name] for name in contract.names if name in namespace}
    by_seed = None if seed is None else (lambda clause: scoring.test_seed(seed, f"test_{clause.name}"))
    return {v.clause: (v.status, v.message) for v in contract.verdicts(objects, seed=by_seed)}


def mistake_source(contract, mistake) -> str:
    """A mistake written as a student would hand it in: its code (and the helpers it calls), no
    decorator, bound to the name the contract asks for."""
    module = inspect.getmodule(mistake.implementation)
    needed, todo = [], [mistake.implementation]
    while todo:
        fn = todo.pop()
        if fn in needed:
            continue
        needed.append(fn)
        if inspect.isclass(fn):  # a module: its private base classes and what its methods call
            names = [base.__name__ for base in fn.__mro__[1:] if base.__module__ == module.__name__]
            names += [n for member in vars(fn).values() if inspect.isfunction(member) for n in member.__code__.co_names]
        else:
            names = list(fn.__code__.co_names)
        todo += [getattr(module, n) for n in names if n.startswith("_")
                 and (inspect.isfunction(getattr(module, n, None)) or inspect.isclass(getattr(module, n, None)))]
    parts = []
    for fn in reversed(needed):
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        tree.body[0].decorator_list = []
        parts.append(ast.unparse(tree))
    return IMPORTS + "\n\n".join(parts) + f"\n\n{mistake.target} = {mistake.implementation.__name__}\n"


def solution_source(exercise: str) -> str:
    """The solution notebook's answers: its imports cell and the cells holding its marked solutions."""
    cells = [python_source(c.source) for c in read_notebook(ROOT / "solutions" / f"{exercise}.ipynb")]
    return IMPORTS + "\n\n".join(c for c in cells if c and ("# BEGIN SOLUTION" in c or c.startswith(("import ", "from "))))


# Wrong answers that are not among the named mistakes: other kinds of failure.
OTHER_WRONG = {
    "01_patches": {
        "numpy_result": """
            def overlapping_patches(images, patch_size, stride):
                return F.unfold(images, patch_size, stride=stride).transpose(1, 2).numpy()
        """,
        "always_float32_and_mutating": """
            def overlapping_patches(images, patch_size, stride):
                images.mul_(0)  # the caller's tensor must not change: it got a copy
                return F.unfold(images.float(), patch_size, stride=stride).transpose(1, 2)
        """,
        "raises_type_error": """
            def linear_to_conv_weight(weight, patch_size):
                raise TypeError("not today")
        """,
        "tensor_subclass": """
            class Mine(torch.Tensor):
                pass

            def linear_to_conv_weight(weight, patch_size):
                d, n = weight.shape
                w = weight.reshape(d, patch_size, patch_size, -1).permute(0, 3, 1, 2)
                return w.as_subclass(Mine)
        """,
        "nothing_defined": "x = 1\n",
    },
    "02_patch_snr": {
        "python_list": """
            def filter_snr(weights, template, noise_std):
                norms = weights.square().sum(dim=(-2, -1)).sqrt()
                return ((weights * template).sum(dim=(-2, -1)) / (noise_std * norms)).tolist()
        """,
        "float32_always": """
            def filter_snr(weights, template, noise_std):
                if noise_std <= 0:
                    raise ValueError("bad")
                norms = weights.float().square().sum(dim=(-2, -1)).sqrt()
                if (norms == 0).any():
                    raise ValueError("zeros")
                return (weights.float() * template.float()).sum(dim=(-2, -1)) / (noise_std * norms)
        """,
        "raises_zero_division": """
            def filter_snr(weights, template, noise_std):
                return 1 / 0
        """,
    },
    "03_attention": {
        "returns_a_dict": """
            def partial_attention(q, k, v, tau=None):
                scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if tau is None else tau)
                return {"out": torch.softmax(scores, -1) @ v, "lse": torch.logsumexp(scores, -1)}
        """,
        "three_items": """
            def merge_attention(out_a, lse_a, out_b, lse_b):
                total = torch.logaddexp(lse_a, lse_b)
                share = torch.exp(lse_a - total)[..., None]
                return share * out_a + (1 - share) * out_b, total, share
        """,
        "raises_type_error": """
            def merge_attention(out_a, lse_a, out_b, lse_b):
                raise TypeError("not today")
        """,
        "lse_in_float64": """
            def partial_attention(q, k, v, tau=None):
                if q.shape[-1] != k.shape[-1] or (tau is not None and tau <= 0):
                    raise ValueError("bad")
                scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if tau is None else tau)
                return torch.softmax(scores, -1) @ v, torch.logsumexp(scores.double(), -1)
        """,
    },
    "09_memory": {
        "float_result": """
            def windowed_map_bytes(depth, heads, grid, window, bytes_per_element=4):
                rows, cols = grid
                if rows % window or cols % window or window < 1:
                    raise ValueError("bad")
                return depth * heads * rows * cols * window**2 * bytes_per_element * 1.0
        """,
        "float_square_roots": """
            def largest_square_grid(budget_bytes, depth, heads, window=None, bytes_per_element=4):
                if window is None:
                    return int((budget_bytes / (depth * heads * bytes_per_element)) ** 0.25)
                side = int((budget_bytes / (depth * heads * window**2 * bytes_per_element)) ** 0.5)
                return side // window * window
        """,
        "raises_key_error": """
            def windowed_map_bytes(depth, heads, grid, window, bytes_per_element=4):
                return {}[grid]
        """,
    },
    "04_mhsa": {
        "no_validation": """
            class GroupedQueryAttention(torch.nn.Module):
                def __init__(self, dim, num_heads, num_kv_heads, qkv_bias=True):
                    super().__init__()
                    self.q = torch.nn.Linear(dim, dim, bias=qkv_bias)
                    self.kv = torch.nn.Linear(dim, 2 * dim // num_heads * num_kv_heads, bias=qkv_bias)
                    self.proj = torch.nn.Linear(dim, dim)

                def forward(self, x):
                    return self.proj(x)
        """,
        "returns_a_tuple": """
            from vitcourse.models.attention import Attention

            class GroupedQueryAttention(Attention):
                def __init__(self, dim, num_heads, num_kv_heads, qkv_bias=True):
                    super().__init__(dim, num_heads, qkv_bias=qkv_bias)

                def forward(self, x):
                    return super().forward(x), None
        """,
        "raises_runtime_error": """
            class GroupedQueryAttention(torch.nn.Module):
                def __init__(self, dim, num_heads, num_kv_heads, qkv_bias=True):
                    raise RuntimeError("not today")
        """,
    },
    "05_positions": {
        "returns_numpy": """
            def rope_2d(x, grid, temperature=10000.0):
                return x.numpy()
        """,
        "input_unchanged_and_no_validation": """
            def rope_2d(x, grid, temperature=10000.0):
                return x.clone()
        """,
        "raises_type_error": """
            def rope_2d(x, grid, temperature=10000.0):
                raise TypeError("not today")
        """,
    },
    "06_rollout": {
        "returns_a_list": """
            def gradient_rollout(attentions, gradients):
                r = torch.eye(attentions[0].shape[-1]).expand(attentions[0].shape[0], -1, -1)
                for a, g in zip(attentions, gradients):
                    r = r + (g * a).clamp(min=0).mean(1) @ r
                return [r]
        """,
        "no_validation_and_float32": """
            def gradient_rollout(attentions, gradients):
                r = torch.eye(attentions[0].shape[-1]).expand(attentions[0].shape[0], -1, -1)
                for a, g in zip(attentions, gradients):
                    r = r + (g * a).float().clamp(min=0).mean(1) @ r
                return r
        """,
        "raises_type_error": """
            def gradient_rollout(attentions, gradients):
                raise TypeError("not today")
        """,
    },
    "08_cost": {
        "returns_a_string": """
            def vit_forward_flops(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
                return "35 GFLOPs"
        """,
        "no_validation": """
            def vit_forward_flops(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
                h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
                n = (h // patch_size) * (w // patch_size)
                L = n + prefix_tokens
                block = 4 * L * dim**2 + 2 * L**2 * dim + 2 * L * dim * int(dim * mlp_ratio)
                return 2 * (n * in_chans * patch_size**2 * dim + depth * block + dim * num_classes)
        """,
        "raises_type_error": """
            def vit_forward_flops(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
                raise TypeError("not today")
        """,
    },
    "07_long_range": {
        "mask_as_int": """
            def same_object_mask(ids):
                return ((ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] != 0)).long()
        """,
        "count_as_float_without_checks": """
            def count_pairs(ids):
                same = (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] != 0)
                size = same.sum(-1).float()
                return torch.where(size >= 2, 1 / size.clamp(min=1), torch.zeros(())).sum(-1)
        """,
        "raises_type_error": """
            def count_pairs(ids):
                raise TypeError("not today")
        """,
    },
    "10_blocks": {
        "not_a_module": """
            class ParallelBlock:
                def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
                    self.dim = dim
        """,
        "forward_returns_a_tuple": """
            from vitcourse.models.vit import Block

            class ParallelBlock(Block):
                def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
                    super().__init__(dim, num_heads, mlp_ratio, init_values=init_values)

                def forward(self, x):
                    return super().forward(x), None
        """,
        "raises_runtime_error": """
            class ParallelBlock(torch.nn.Module):
                def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
                    raise RuntimeError("not today")
        """,
    },
    "11_distillation": {
        "python_float": """
            def hard_distillation_loss(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
                return F.cross_entropy(cls_logits, labels).item()
        """,
        "no_default_and_own_error": """
            class ValueError(Exception):  # not the built-in one
                pass

            def smooth_labels(labels, num_classes, epsilon):
                if not 0 <= epsilon < 1 or labels.max() >= num_classes:
                    raise ValueError("bad")
                one_hot = F.one_hot(labels, num_classes).float()
                return one_hot * (1 - epsilon) + (1 - one_hot) * epsilon / (num_classes - 1)

            def hard_distillation_loss(cls_logits, dist_logits, teacher_logits, labels, epsilon):
                return cls_logits.sum()
        """,
        "returns_a_tuple": """
            def smooth_labels(labels, num_classes, epsilon):
                return (F.one_hot(labels, num_classes).float(),)
        """,
    },
    "13_segmentation": {
        "numpy_logits": """
            def upsampled_logits(tokens, weight, bias, grid_size, image_size):
                grid = F.linear(tokens, weight, bias).transpose(1, 2).reshape(len(tokens), -1, *grid_size)
                return F.interpolate(grid, size=tuple(image_size), mode="bilinear").numpy()
        """,
        "channels_last_logits": """
            def upsampled_logits(tokens, weight, bias, grid_size, image_size):
                if tokens.shape[1] != grid_size[0] * grid_size[1] or weight.shape[1] != tokens.shape[2]:
                    raise ValueError("bad")
                grid = F.linear(tokens, weight, bias).transpose(1, 2).reshape(len(tokens), -1, *grid_size)
                return F.interpolate(grid, size=tuple(image_size), mode="bilinear").permute(0, 2, 3, 1)
        """,
        "returns_only_the_mean": """
            def mean_iou_ignoring(pred, target, num_classes, ignore_index=255):
                return 0.5
        """,
        "raises_type_error": """
            def mean_iou_ignoring(pred, target, num_classes, ignore_index=255):
                raise TypeError("not today")
        """,
    },
    "14_masking": {
        "returns_a_pair": """
            def shuffle_mask(tokens, noise, mask_ratio):
                order = noise.argsort(1)
                keep = max(1, round(tokens.shape[1] * (1 - mask_ratio)))
                return tokens.gather(1, order[:, :keep, None].expand(-1, -1, tokens.shape[2])), order.argsort(1)
        """,
        "numpy_restore": """
            def shuffle_mask(tokens, noise, mask_ratio):
                if not 0 <= mask_ratio < 1 or noise.shape != tokens.shape[:2]:
                    raise ValueError("bad")
                order = noise.argsort(1)
                keep = max(1, round(tokens.shape[1] * (1 - mask_ratio)))
                restore = order.argsort(1)
                return tokens.gather(1, order[:, :keep, None].expand(-1, -1, tokens.shape[2])), restore >= keep, restore.numpy()
        """,
        "python_float_loss": """
            def masked_patch_loss(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
                target = F.unfold(images, patch_size, stride=patch_size).transpose(1, 2)
                return ((pred - target) ** 2).mean(-1)[mask].mean().item()
        """,
        "raises_type_error": """
            def masked_patch_loss(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
                raise TypeError("not today")
        """,
    },
    "12_resolution": {
        "numpy_matrix": """
            def resize_matrix(old_size, new_size):
                basis = torch.eye(old_size**2, dtype=torch.float64).reshape(-1, 1, old_size, old_size)
                return F.interpolate(basis, size=(new_size, new_size), mode="bilinear").flatten(1).T.numpy()
        """,
        "float32_matrix": """
            def resize_matrix(old_size, new_size):
                if old_size < 1 or new_size < 1:
                    raise ValueError("sizes must be positive")
                basis = torch.eye(old_size**2).reshape(-1, 1, old_size, old_size)
                return F.interpolate(basis, size=(new_size, new_size), mode="bilinear").flatten(1).T
        """,
        "raises_type_error": """
            def pi_resize_patch_weight(weight, new_size):
                raise TypeError("not today")
        """,
        "returns_a_list": """
            def pi_resize_patch_weight(weight, new_size):
                return [weight]
        """,
    },
    "15_contrastive": {
        "python_float": """
            def multi_positive_clip_loss(image_emb, text_emb, labels, log_scale):
                z = F.normalize(image_emb, dim=1) @ F.normalize(text_emb, dim=1).T * math.exp(float(log_scale))
                return F.cross_entropy(z, torch.arange(len(z))).item()
        """,
        "always_float32": """
            def sigmoid_pair_loss(image_emb, text_emb, labels, log_scale, bias):
                if image_emb.dim() != 2 or image_emb.shape != text_emb.shape or labels.shape != image_emb.shape[:1]:
                    raise ValueError("bad shapes")
                x, y = F.normalize(image_emb.float(), dim=1), F.normalize(text_emb.float(), dim=1)
                z = math.exp(float(log_scale)) * (x @ y.T) + float(bias)
                sign = (labels[:, None] == labels[None]).float() * 2 - 1
                return -F.logsigmoid(sign * z).sum() / len(z)
        """,
        "raises_type_error": """
            def sigmoid_pair_loss(image_emb, text_emb, labels, log_scale, bias):
                raise TypeError("not today")
        """,
    },
    "16_generation": {
        "float_mask": """
            def generation_mask(order, block_size=1):
                if block_size < 1 or sorted(order.tolist()) != list(range(len(order))):
                    raise ValueError("bad order")
                block = order.argsort() // block_size
                return (block[None, :] <= block[:, None]).float()
        """,
        "numpy_probs": """
            def next_token_probs(logits, temperature=1.0, top_k=None):
                return (logits / max(temperature, 1e-9)).softmax(dim=1).numpy()
        """,
        "raises_type_error": """
            def next_token_probs(logits, temperature=1.0, top_k=None):
                raise TypeError("not today")
        """,
    },
}


def submissions(contract) -> dict[str, str]:
    """Every submission the two uses are compared on."""
    found = {"solution": solution_source(contract.exercise)}
    found.update({f"mistake {m.name}": mistake_source(contract, m) for m in contract.mistakes})
    found.update({f"other {k}": IMPORTS + textwrap.dedent(v) for k, v in OTHER_WRONG[contract.exercise].items()})
    return found


# ---- the contract is the hidden tests ----------------------------------------------------------------


@contracts
def test_the_hidden_tests_are_the_contract(contract):
    suite = load_hidden_suite(HIDDEN, contract.exercise)
    assert [(t.name, t.points, t.title) for t in suite.tests] == [
        (f"test_{c.name}", c.points, c.title) for c in contract.clauses]
    assert suite.reference_answers == contract.reference_answers
    assert set(contract.reference_answers) == set(contract.names)


def _declared(path: Path) -> dict[str, str]:
    """name -> signature of the functions and classes a notebook defines, read from its code."""
    found = {}
    for cell in read_notebook(path):
        source = python_source(cell.source)
        for node in ast.parse(source or "").body:
            if isinstance(node, ast.FunctionDef):
                found[node.name] = f"({ast.unparse(node.args)})"
            elif isinstance(node, ast.ClassDef):
                init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
                if init is not None:
                    init.args.args = init.args.args[1:]  # without self
                    found[node.name] = f"({ast.unparse(init.args)})"
    return found


@contracts
@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_the_notebooks_define_the_contract_names_with_its_signatures(contract, folder):
    declared = _declared(ROOT / folder / f"{contract.exercise}.ipynb")
    for name, signature in contract.names.items():
        assert declared.get(name) == signature, (folder, name, declared.get(name), signature)


def _expects_an_error(clause) -> bool:
    return "expect_raises" in inspect.getsource(clause.run)


@contracts
def test_points_are_weighted_by_what_the_exercise_teaches(contract):
    validation = [c for c in contract.clauses if _expects_an_error(c)]
    computing = [c for c in contract.clauses if not _expects_an_error(c)]
    assert validation and computing
    assert sum(c.points for c in validation) <= 0.2 * contract.max_points
    assert max(c.points for c in validation) <= min(c.points for c in computing)
    for name in contract.names:  # each name's main clause outweighs its error checks twice over
        mine = [c for c in contract.clauses if c.target == name]
        assert max(c.points for c in mine) >= 2 * max((c.points for c in mine if _expects_an_error(c)), default=0)


@contracts
def test_every_name_has_clauses_and_the_exercise_three_mistakes_or_more(contract):
    assert {c.target for c in contract.clauses} == set(contract.names)
    assert len(contract.mistakes) >= 3
    assert len({m.message for m in contract.mistakes}) == len(contract.mistakes)


# ---- feedback that names the bug ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "contract, mistake",
    [(c, m) for c in CONTRACTS.values() for m in c.mistakes],
    ids=[f"{c.exercise}/{m.name}" for c in CONTRACTS.values() for m in c.mistakes])
def test_each_mistake_is_named_by_check_and_by_the_grader(contract, mistake, capsys):
    namespace = run_submission(contract.exercise, mistake_source(contract, mistake))
    others = [m.message for m in contract.mistakes if m is not mistake]

    assert contract.check(mistake.target, namespace[mistake.target]) is False
    printed = capsys.readouterr().out
    assert f"{MISTAKE_PREFIX} {mistake.message}" in printed, printed
    assert not any(message in printed for message in others), printed

    mine = {c.name for c in contract.clauses if c.target == mistake.target}
    for verdicts in [checked(contract, namespace)] + [graded(contract.exercise, namespace, s) for s in GRADER_SEEDS]:
        failed = {clause: text for clause, (status, text) in verdicts.items() if status != "passed" and clause in mine}
        assert failed, verdicts
        for clause, text in failed.items():
            assert mistake.message in text, (clause, text)
            assert not any(message in text for message in others), (clause, text)


# ---- one contract, two uses: never diverging ---------------------------------------------------------------


@pytest.mark.parametrize(
    "contract, name",
    [(c, n) for c in CONTRACTS.values() for n in submissions(c)],
    ids=[f"{c.exercise}/{n}" for c in CONTRACTS.values() for n in submissions(c)])
def test_check_and_the_grader_give_the_same_verdicts_and_messages(contract, name):
    namespace = run_submission(contract.exercise, submissions(contract)[name])
    for seed in GRADER_SEEDS:
        assert checked(contract, namespace, seed) == graded(contract.exercise, namespace, seed)
    verdicts = checked(contract, namespace)
    passed = all(status == "passed" for status, _ in verdicts.values())
    assert passed == (name == "solution"), verdicts


@pytest.mark.slow
def test_the_sandboxed_grader_and_check_agree_on_a_handed_in_mistake(tmp_path):
    """The real grader (a sandboxed worker, the wire, the proxy) against check()'s LocalStudent,
    on a generated exercise with a common mistake written into it and one stub left."""
    from vitcourse.grading.batch import grade
    from vitcourse.grading.trusted.gradebook import Gradebook

    contract = CONTRACTS["01_patches"]
    mistake = next(m for m in contract.mistakes if m.name == "column_major_grid")
    notebook = nbformat.read(ROOT / "exercises" / "01_patches.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(mistake_source(contract, mistake)))
    folder = tmp_path / "submissions"
    folder.mkdir()
    nbformat.write(notebook, folder / "student.ipynb")
    grade("01_patches", [("student", folder / "student.ipynb")], tmp_path / "out", jobs=1,
          hidden_dir=HIDDEN, seed=7, progress=False)
    book = Gradebook(tmp_path / "out" / "gradebook.sqlite")
    try:
        tests = book.results_json("student", "01_patches")["tests"]
    finally:
        book.close()
    suite = load_hidden_suite(HIDDEN, "01_patches")
    with graded_notebook(folder / "student.ipynb", "_visible_student", suite.reference_answers, suite.module) as namespace:
        visible = checked(contract, namespace, seed=7)
    assert len(tests) == len(visible) == len(contract.clauses)
    for test, (clause, (status, message)) in zip(tests, visible.items(), strict=True):
        assert test["status"] == ("passed" if status == "passed" else "failed"), (clause, test, message)
        assert test["output"] == (message or "passed"), (clause, test["output"], message)
    named = [t for t in tests if mistake.message in t["output"]]
    stubbed = [t for t in tests if "NotImplementedError" in t["output"]]
    assert len(named) >= 3 and len(stubbed) == 3, tests


@contracts
def test_a_clause_calls_only_its_own_name(contract):
    # a clause that strays is a bug in the contract, reported as such, never as the student's fault
    clause = contract.clauses[0]
    other = next((n for n in contract.names if n != clause.target), "another_name")  # one-name exercises too
    stray = type(clause)(clause.name, other, clause.points, clause.title, clause.run)
    verdict = contract._verdict(stray, LocalStudent({}), None)
    assert verdict.status == "error" and "contract bug" in verdict.message


# ---- check()'s student answers as the grader's does ------------------------------------------------------

PARITY = """
import torch
from collections import OrderedDict

class Sub(torch.Tensor):
    pass

class MyError(ValueError):
    pass

class ValueError(Exception):  # a class merely called ValueError
    pass

def view(x):
    return x[:2]

def mutate(x):
    x.add_(1)
    return x

def subclass(x):
    return x.as_subclass(Sub)

def an_object(x):
    return object()

def numpy(x):
    return x.numpy()

def nested(x):
    return {"a": (1, 2.5, None, "s"), 3: [x.sum(), torch.Size([2, 3])]}

def my_error(x):
    raise MyError("mine")

def fake_value_error(x):
    raise ValueError("fake")

def exits(x):
    raise SystemExit(3)

def stub(x):
    raise NotImplementedError("replace this line with your code")

class NotAModule:
    def __init__(self, dim):
        pass

class Scale(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.weight, x.sum()
"""

FUNCTIONS = ["view", "mutate", "subclass", "an_object", "numpy", "nested", "my_error",
             "fake_value_error", "exits", "stub", "undefined"]
MODULES = [
    ("Scale", {"init_args": (3,), "state_dict": {"weight": torch.arange(3.0)}, "inputs": (torch.ones(2, 3),)}),
    ("Scale", {"init_args": (3,), "state_dict": {"weight": torch.ones(4)}, "inputs": (torch.ones(2, 3),)}),
    ("Scale", {"init_args": (3,), "state_dict": {"scale": torch.ones(3)}, "inputs": (torch.ones(2, 3),)}),
    ("NotAModule", {"init_args": (3,)}),
    ("Missing", {}),
]


def _outcome(request):
    try:
        return ("value", request())
    except (StudentRaised, StudentCrashed) as failure:
        return (type(failure).__name__, str(failure), getattr(failure, "type_name", None),
                getattr(failure, "bases", None))


def _same(a, b) -> bool:
    return a[0] == b[0] and (same_values(a[1], b[1]) if a[0] == "value" else a == b)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_local_student_calls_like_the_grader(name):
    namespace: dict = {"__name__": "_parity"}
    exec(PARITY, namespace)
    x = torch.arange(6.0).reshape(3, 2)
    local = _outcome(lambda: LocalStudent(namespace).call(name, x))
    grader = _outcome(lambda: in_process_student(namespace).call(name, x))
    assert _same(local, grader), (local, grader)
    assert torch.equal(x, torch.arange(6.0).reshape(3, 2))  # the student's code got a copy


@pytest.mark.parametrize("case", range(len(MODULES)))
def test_local_student_builds_modules_like_the_grader(case):
    namespace: dict = {"__name__": "_parity"}
    exec(PARITY, namespace)
    name, request = MODULES[case]
    local = _outcome(lambda: LocalStudent(namespace).module(name, **request))
    grader = _outcome(lambda: in_process_student(namespace).module(name, **request))
    assert _same(local, grader), (local, grader)


def test_local_student_flags_a_stub_and_lets_an_interrupt_through():
    namespace: dict = {"__name__": "_parity"}
    exec(PARITY + "\ndef interrupted(x):\n    raise KeyboardInterrupt\n", namespace)
    student = LocalStudent(namespace)
    with pytest.raises(StudentRaised):
        student.call("view", torch.ones(3), torch.ones(2))
    assert not student.stubbed
    with pytest.raises(StudentRaised, match="NotImplementedError"):
        student.call("stub", torch.ones(3))
    assert student.stubbed
    with pytest.raises(KeyboardInterrupt):
        student.call("interrupted", torch.ones(3))


# ---- the grader watches the contracts -------------------------------------------------------------------


@contracts
def test_sandbox_none_watches_the_contracts_with_the_package(contract, tmp_path, monkeypatch):
    from vitcourse.grading import batch
    from vitcourse.grading.trusted.gradebook import Gradebook
    from vitcourse.grading.trusted.modes import Sandbox

    package = batch.PACKAGE_DIR.resolve()
    module_file = Path(inspect.getfile(contract.clauses[0].run)).resolve()
    assert module_file.is_relative_to(package)  # the contract the grader runs is the package's
    copy = tmp_path / "vitcourse"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(batch, "PACKAGE_DIR", copy)
    suite = load_hidden_suite(HIDDEN, contract.exercise)
    book = Gradebook(tmp_path / "gradebook.sqlite")
    try:
        watching = batch._ledger(book, suite, Sandbox("none"))
        trusting = batch._ledger(book, suite, Sandbox("bwrap"))  # read-only to student code there
        assert watching.changes() == [] == trusting.changes()
        tampered = copy / module_file.relative_to(package)
        tampered.write_text(tampered.read_text() + "\nFREE_POINTS = True\n")
        assert any(str(tampered) in change and "was changed" in change for change in watching.changes())
        assert trusting.changes() == []
    finally:
        book.close()
