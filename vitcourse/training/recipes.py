"""The course's training recipes: which named model, which data, which ``fit`` settings.

A recipe is a plain dict: ``model`` (a name for :func:`vitcourse.models.registry.create_model`),
``model_overrides`` (its keyword overrides), ``data`` (keywords of the data loader) and ``fit``
(keywords of :func:`vitcourse.training.loop.fit`). ``vitcourse bench train`` trains exactly these
and prints them; chapter 3.1 and the distillation experiment start from them.
"""

from __future__ import annotations

__all__ = ["DIGITS_RECIPE", "CNN_RECIPE"]

# The course-scale ViT recipe for digits: the named configuration "vit_digits" as registered
# (4 x 4 patches; models/registry.py says why) and fit() keywords. `vitcourse bench train`
# trains exactly this and prints it.
DIGITS_RECIPE = {
    "model": "vit_digits",
    "model_overrides": {},
    "data": {"upscale": 1},
    "fit": {
        "epochs": 30,
        "batch_size": 32,
        "lr": 3e-3,
        "weight_decay": 0.05,
        "warmup_epochs": 2,
        "label_smoothing": 0.1,
        "grad_clip": 1.0,
        "augment": {"shift": 1},
    },
}

# The convnet baseline (and distillation teacher) on the same data.
CNN_RECIPE = {
    "model": "cnn_digits",
    "model_overrides": {"width": 32},
    "data": {"upscale": 1},
    "fit": {
        "epochs": 10,
        "batch_size": 32,
        "lr": 2e-3,
        "weight_decay": 0.05,
        "warmup_epochs": 1,
        "label_smoothing": 0.0,
        "grad_clip": 1.0,
        "augment": {"shift": 1},
    },
}
