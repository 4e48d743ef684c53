"""The chapters' figures draw what they are given: checked against the numbers, not by eye."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vitcourse.analysis.figures import plot_history  # noqa: E402


def _history(train_loss, test_accuracy):
    return [{"epoch": e + 1, "train_loss": tl, "train_accuracy": 0.5, "test_loss": 1.0, "test_accuracy": ta}
            for e, (tl, ta) in enumerate(zip(train_loss, test_accuracy, strict=True))]


def _line(ax, label):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_one_history_per_name_draws_its_values():
    fig = plot_history({"ViT": _history([2.0, 1.0, 0.5], [0.3, 0.6, 0.9])})
    loss, accuracy = fig.axes
    np.testing.assert_array_equal(_line(loss, "ViT train").get_ydata(), [2.0, 1.0, 0.5])
    np.testing.assert_array_equal(_line(accuracy, "ViT test").get_ydata(), [0.3, 0.6, 0.9])
    assert not accuracy.collections  # one run: no band
    plt.close(fig)


def test_several_runs_draw_their_mean_and_a_band_from_lowest_to_highest():
    runs = [_history([2.0, 1.0], [0.2, 0.8]), _history([3.0, 0.5], [0.4, 0.9]), _history([1.0, 0.9], [0.3, 0.7])]
    fig = plot_history({"ViT": runs, "CNN": runs[:1]})
    loss, accuracy = fig.axes
    test = np.array([[h["test_accuracy"] for h in run] for run in runs])
    np.testing.assert_allclose(_line(accuracy, "ViT test (mean of 3)").get_ydata(), test.mean(axis=0))
    np.testing.assert_allclose(_line(loss, "ViT train (mean of 3)").get_ydata(), [2.0, 2.4 / 3])
    assert len(accuracy.collections) == 2  # the ViT's train and test bands; the single CNN run has none
    band = accuracy.collections[1].get_paths()[0].vertices  # the test band: the polygon fill_between draws
    for epoch, column in zip((1, 2), test.T, strict=True):
        at_epoch = band[np.isclose(band[:, 0], epoch), 1]
        np.testing.assert_allclose([at_epoch.min(), at_epoch.max()], [column.min(), column.max()])
    plt.close(fig)


def test_runs_with_other_epochs_are_refused():
    with pytest.raises(ValueError, match="share their epochs"):
        plot_history({"ViT": [_history([1.0, 0.5], [0.5, 0.6]), _history([1.0], [0.5])]})
    with pytest.raises(ValueError, match="non-empty"):
        plot_history({"ViT": []})


def _rollout_panel(rollout_map):
    import torch

    from vitcourse.analysis.figures import plot_rollout_on_image

    fig = plot_rollout_on_image(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)), rollout_map)
    heat = fig.axes[1].get_images()[-1]
    return fig, heat


def test_rollout_is_drawn_as_a_share_of_the_uniform_share_with_its_colour_bar():
    import torch

    flat_fig, flat = _rollout_panel(torch.full((4, 4), 0.05))
    np.testing.assert_array_equal(flat.get_array(), np.ones((32, 32)))  # a flat map is the uniform share
    plt.close(flat_fig)
    cells = np.arange(1.0, 17.0).reshape(4, 4)
    fig, heat = _rollout_panel(torch.tensor(cells))
    low, high = heat.get_clim()
    share = cells / cells.mean()  # numpy reference: each cell over the mean cell
    # the colours span the map's range (bilinear with align_corners=False repeats the corner cells at the edges)
    np.testing.assert_allclose([low, high], [share.min(), share.max()], rtol=1e-12)
    assert fig.axes[-1].get_ylabel() == "share / uniform share"  # the colour bar
    scaled_fig, scaled = _rollout_panel(torch.tensor(7 * cells))  # a share does not depend on the scale
    np.testing.assert_allclose(scaled.get_array(), heat.get_array(), rtol=1e-12)
    plt.close(fig)
    plt.close(scaled_fig)
