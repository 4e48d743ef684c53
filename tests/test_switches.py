"""Each chapter's switched path (``LARGER_RUN`` / ``LOAD_PRETRAINED = True``) runs to the end.

nbval checks the default path against the stored outputs; these tests run the other path, the
one a reader gets after flipping the switch in Colab, offline and on the CPU
(``tests/switched_notebooks.py`` says how).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import nbformat
import pytest

from tests.switched_notebooks import (
    CHAPTERS,
    SHRINK,
    STAND_INS,
    code_of,
    flip_switch,
    run_switched,
    shrink,
    switched_chapters,
    switched_runs,
    switches_of,
)

SWITCHED = switched_chapters()
RUNS = switched_runs()


def test_every_chapter_that_uses_a_switch_sets_it_once_to_false():
    using = {path for path in CHAPTERS.rglob("*.ipynb") if re.search(r"\b(LARGER_RUN|LOAD_PRETRAINED)\b", code_of(path))}
    assert using == set(SWITCHED)
    assert len(SWITCHED) >= 10
    for path in SWITCHED:
        for switch in switches_of(path):
            flip_switch(nbformat.read(path, as_version=4), path.name, switch)  # raises unless exactly one line
    # The pages that have both switches run once with each.
    assert (CHAPTERS / "02_applications/04_multimodal.ipynb", "LOAD_PRETRAINED") in RUNS
    assert (CHAPTERS / "02_applications/04_multimodal.ipynb", "LARGER_RUN") in RUNS


def test_stand_ins_and_shrinks_name_real_notebooks():
    for name in {*SHRINK, *STAND_INS}:
        assert (CHAPTERS / name) in SWITCHED, name
    for name in SHRINK:
        shrink(nbformat.read(CHAPTERS / name, as_version=4), name)  # raises if a text no longer matches


def _notebook(*sources: str):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def test_flip_switch_refuses_none_or_two():
    nb = _notebook("import torch\nLARGER_RUN = False  # True on a GPU", "print(LARGER_RUN)")
    assert flip_switch(nb, "one.ipynb") == "LARGER_RUN"
    assert nb.cells[0].source == "import torch\nLARGER_RUN = True  # True on a GPU"
    with pytest.raises(ValueError, match="none.ipynb: expected one .* found 0"):
        flip_switch(_notebook("LARGER_RUN = True"), "none.ipynb")
    with pytest.raises(ValueError, match="two.ipynb: expected one .* found 2"):
        flip_switch(_notebook("LARGER_RUN = False", "LOAD_PRETRAINED = False"), "two.ipynb")


def test_flip_switch_by_name_flips_that_one_and_refuses_it_twice():
    nb = _notebook("LARGER_RUN = False  # longer\nLOAD_PRETRAINED = False  # download", "print(LOAD_PRETRAINED)")
    assert flip_switch(nb, "both.ipynb", "LOAD_PRETRAINED") == "LOAD_PRETRAINED"
    assert nb.cells[0].source == "LARGER_RUN = False  # longer\nLOAD_PRETRAINED = True  # download"
    assert flip_switch(nb, "both.ipynb", "LARGER_RUN") == "LARGER_RUN"
    assert nb.cells[0].source == "LARGER_RUN = True  # longer\nLOAD_PRETRAINED = True  # download"
    with pytest.raises(ValueError, match="twice.ipynb: expected one `LOAD_PRETRAINED = False` line, found 2"):
        flip_switch(_notebook("LOAD_PRETRAINED = False", "LOAD_PRETRAINED = False"), "twice.ipynb", "LOAD_PRETRAINED")
    with pytest.raises(ValueError, match="none.ipynb: expected one `LARGER_RUN = False` line, found 0"):
        flip_switch(_notebook("LOAD_PRETRAINED = False"), "none.ipynb", "LARGER_RUN")


def test_shrink_refuses_a_stale_replacement(monkeypatch):
    monkeypatch.setitem(SHRINK, "x.ipynb", {"epochs=50": "epochs=1"})
    nb = _notebook("fit(model, epochs=50)")
    shrink(nb, "x.ipynb")
    assert nb.cells[0].source == "fit(model, epochs=1)"
    with pytest.raises(ValueError, match="SHRINK text 'epochs=50' is not in any code cell"):
        shrink(_notebook("fit(model, epochs=40)"), "x.ipynb")


def _load_offline(script: str, hub_home, checkpoint: str) -> dict:
    """Run `script` (which prints one JSON line) on `checkpoint` in a new process whose hub is the
    stand-in hub at `hub_home`: the hub's offline switch is read when huggingface_hub is imported."""
    from tests.stand_ins import hub_environment

    result = subprocess.run([sys.executable, "-c", script, checkpoint], env={**os.environ, **hub_environment(hub_home)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


CLIP_CHECK = """
import json, sys
from transformers import CLIPModel, CLIPProcessor
model, processor = CLIPModel.from_pretrained(sys.argv[1]), CLIPProcessor.from_pretrained(sys.argv[1])
tokenizer = processor.tokenizer
print(json.dumps({"tokens": tokenizer(["a photo of a cat"])["input_ids"][0], "bos": tokenizer.bos_token_id,
                  "eos": tokenizer.eos_token_id, "model_eos": model.config.text_config.eos_token_id,
                  "mean": list(processor.image_processor.image_mean), "patch": model.config.vision_config.patch_size}))
"""


def test_the_clip_stand_in_loads_offline_as_the_multimodal_page_loads_it(tmp_path):
    from tests.stand_ins import CLIP_CHECKPOINT, write_clip_repo

    found = _load_offline(CLIP_CHECK, write_clip_repo(tmp_path), CLIP_CHECKPOINT)
    # CLIP's start and end tokens around one token per character (no merges; spaces are not tokens)
    assert found["tokens"][0] == found["bos"] and found["tokens"][-1] == found["eos"]
    assert len(found["tokens"]) == len("aphotoofacat") + 2
    assert found["model_eos"] == found["eos"]  # the text tower pools at the end-of-text token
    assert found["mean"] == [0.48145466, 0.4578275, 0.40821073]  # CLIP's mean, not ImageNet's
    assert found["patch"] == 32


@pytest.mark.slow
@pytest.mark.parametrize("path,switch", RUNS, ids=[f"{path.relative_to(CHAPTERS).as_posix()}:{switch}" for path, switch in RUNS])
def test_switched_path_runs(path, switch, tmp_path):
    # 600 s a cell, as nbval. nbclient sometimes misses the reply to a cell that opens ipywidgets
    # (1.2's tau slider): the reply is read only when the cell's timeout expires, and the run goes on
    # (jupyter/nbclient#312). That costs CI one timeout: ten minutes, not thirty.
    run_switched(path, tmp_path, timeout=600, switch=switch)  # fails naming the failing cell and its traceback


MAE_CHECK = """
import json, sys
from transformers import ViTMAEForPreTraining
model = ViTMAEForPreTraining.from_pretrained(sys.argv[1], layer_norm_eps=1e-6)
config = model.config
print(json.dumps({"eps": [m.eps for m in model.modules() if hasattr(m, "eps")], "ratio": config.mask_ratio,
                  "patch": config.patch_size, "size": config.image_size, "norm_pix": config.norm_pix_loss,
                  "decoder": sorted({key.split(".")[0] for key in model.state_dict()})}))
"""


def test_the_mae_stand_in_loads_offline_as_the_masked_pretraining_page_loads_it(tmp_path):
    # The page overrides the hub config's LayerNorm eps (1e-12) with MAE's 1e-6: every LayerNorm,
    # encoder and decoder, must get it, or its comparison with the course's model would not hold.
    from tests.stand_ins import MAE_CHECKPOINT, write_mae_repo

    found = _load_offline(MAE_CHECK, write_mae_repo(tmp_path), MAE_CHECKPOINT)
    assert len(found["eps"]) == 2 * 2 + 1 + 2 * 1 + 1 and set(found["eps"]) == {1e-6}  # encoder, decoder norms
    assert (found["ratio"], found["patch"], found["size"], found["norm_pix"]) == (0.75, 16, 224, False)
    assert found["decoder"] == ["decoder", "vit"]  # the encoder and the pixel decoder
