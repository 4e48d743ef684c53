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
