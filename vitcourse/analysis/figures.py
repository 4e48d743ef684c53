"""The figures the chapters draw.

Each function takes plain tensors or numbers (what the other modules return) and draws on a
matplotlib figure; none computes anything the chapters rely on as a result. matplotlib is
imported inside each function, so importing this module costs nothing.
"""

from __future__ import annotations


def _image_figure(fig, axes, title: str = ""):
    """Finish a figure of image panels: no ticks, an optional title, tight layout."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- chapter 1: pixels to tokens, attention, positions ---------------------------------------


def _as_hwc(image):
    """``(C, H, W)`` or ``(H, W)`` tensor/array in [0, 1] -> an ``(H, W, C)``/``(H, W)`` numpy array."""
    import numpy as np

    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 3:
        array = array.transpose(1, 2, 0)
        if array.shape[-1] == 1:
            array = array[..., 0]
    return array.clip(0, 1)


def plot_patch_grid(image, patch_size: int, gap: int = 3, title: str = ""):
    """Left: ``image`` ``(C, H, W)`` with the patch grid drawn on it; right: the patches pulled apart.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    array = _as_hwc(image)
    height, width = array.shape[:2]
    rows, cols = height // patch_size, width // patch_size
    exploded = np.ones((rows * (patch_size + gap) - gap, cols * (patch_size + gap) - gap) + array.shape[2:])
    for r in range(rows):
        for c in range(cols):
            exploded[r * (patch_size + gap) : r * (patch_size + gap) + patch_size,
                     c * (patch_size + gap) : c * (patch_size + gap) + patch_size] = array[
                r * patch_size : (r + 1) * patch_size, c * patch_size : (c + 1) * patch_size]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    cmap = "gray" if array.ndim == 2 else None
    axes[0].imshow(array, cmap=cmap)
    for k in range(1, rows):
        axes[0].axhline(k * patch_size - 0.5, color="white", lw=0.6)
    for k in range(1, cols):
        axes[0].axvline(k * patch_size - 0.5, color="white", lw=0.6)
    axes[0].set_title(f"{height} x {width} image, {patch_size} x {patch_size} patches")
    axes[1].imshow(exploded, cmap=cmap)
    axes[1].set_title(f"{rows} x {cols} = {rows * cols} patches (tokens)")
    return _image_figure(fig, axes, title)


def plot_similarity_grid(similarity, grid, titles=None, ncols: int = 4, suptitle: str = "", vmin: float = -1.0, vmax: float = 1.0):
    """Small multiples of token-to-token similarity maps on the patch grid.

    Args:
        similarity: ``(K, rows * cols)``: row k is the similarity of one chosen token to all
            grid tokens (e.g. cosine similarity of position embeddings).
        grid: ``(rows, cols)``.
        titles: K panel titles.
        vmin, vmax: the colour scale, shared by all panels.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    sim = similarity.detach().cpu().numpy() if hasattr(similarity, "detach") else np.asarray(similarity)
    rows, cols = grid
    count = sim.shape[0]
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 1.9 * nrows + 0.5), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= count:
            ax.axis("off")
            continue
        image = ax.imshow(sim[k].reshape(rows, cols), cmap="viridis", vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="cosine similarity")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


# ---- chapter 2: diagrams of detection and hierarchical ViTs ---------------------------------


def set_prediction_diagram(cost, rows, cols, row_labels, col_labels, ax=None):
    """Draw a matching cost matrix ``(P, T)`` and the chosen pairs (DETR's Hungarian matching).

    Args:
        cost: ``(P, T)`` array, predictions by targets.
        rows, cols: the matched index pairs (as returned by ``linear_sum_assignment``).
        row_labels, col_labels: names of the predictions and of the targets.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    cost = np.asarray(cost, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    image = ax.imshow(cost, cmap="magma_r")
    for r, c in zip(rows, cols, strict=True):
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="cyan", lw=2.5))
    for (r, c), value in np.ndenumerate(cost):
        ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8,
                color="white" if value > cost.mean() else "black")
    ax.set_xticks(range(cost.shape[1]), col_labels, fontsize=8)
    ax.set_yticks(range(cost.shape[0]), row_labels, fontsize=8)
    ax.set_xlabel("ground-truth objects")
    ax.set_ylabel("predicted slots")
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label="matching cost")
    return ax


def hierarchy_diagram(grid: int = 8, window: int = 4, stages: int = 3, ax=None):
    """Draw a Swin-style hierarchy: token grids halved per stage, local attention windows outlined.

    Stage s has a ``grid / 2**s`` square grid of tokens; attention is computed inside each
    ``window x window`` block (red), and patch merging joins 2 x 2 neighbours between stages.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.2))
    x0 = 0.0
    side = 3.0
    for s in range(stages):
        n = grid // 2**s
        cell = side / n
        for i in range(n + 1):
            ax.plot([x0, x0 + side], [i * cell, i * cell], color="0.6", lw=0.6)
            ax.plot([x0 + i * cell, x0 + i * cell], [0, side], color="0.6", lw=0.6)
        w = min(window, n)
        for a in range(0, n, w):
            for b in range(0, n, w):
                ax.add_patch(plt.Rectangle((x0 + a * cell, b * cell), w * cell, w * cell,
                                           fill=False, ec="tab:red", lw=2))
        ax.text(x0 + side / 2, -0.35, f"stage {s + 1}: {n}x{n} tokens\nwindows {w}x{w}",
                ha="center", va="top", fontsize=9)
        if s < stages - 1:
            ax.annotate("", xy=(x0 + side + 0.9, side / 2), xytext=(x0 + side + 0.1, side / 2),
                        arrowprops=dict(arrowstyle="->", lw=1.5))
            ax.text(x0 + side + 0.5, side / 2 + 0.2, "merge\n2x2", ha="center", fontsize=8)
        x0 += side + 1.0
    ax.set_xlim(-0.2, x0 - 0.8)
    ax.set_ylim(-1.3, side + 0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


# ---- chapter 3: hands-on training, distillation, resolution, pretrained weights -------------


def plot_history(histories: dict, title: str = ""):
    """Training curves from :func:`vitcourse.training.loop.fit` histories: loss (left), accuracy (right).

    Args:
        histories: ``{name: history}``, each history a list of per-epoch dicts with ``epoch``,
            ``train_loss``, ``train_accuracy`` and optionally ``test_loss``, ``test_accuracy``.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for k, (name, history) in enumerate(histories.items()):
        color = f"C{k}"
        epochs = [h["epoch"] for h in history]
        for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
            ax.plot(epochs, [h[f"train_{key}"] for h in history], color=color, ls="--", label=f"{name} train")
            if f"test_{key}" in history[0]:
                ax.plot(epochs, [h[f"test_{key}"] for h in history], color=color, label=f"{name} test")
    axes[0].set_ylabel("cross-entropy")
    axes[1].set_ylabel("accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_errorbars(x, series: dict, xlabel: str, ylabel: str = "test accuracy", title: str = "", logx: bool = False):
    """Mean +/- standard deviation curves, one per entry of ``series`` (``{name: (means, stds)}``).

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, (means, stds) in series.items():
        ax.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=name)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(list(x))
        ax.set_xticklabels([str(v) for v in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_bars(names, means, stds, ylabel: str = "test accuracy", title: str = "", ylim=None):
    """Horizontal bars with error bars (e.g. the distillation table). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    positions = list(range(len(names)))[::-1]
    ax.barh(positions, means, xerr=stds, capsize=3, color=[f"C{k % 10}" for k in range(len(names))])
    ax.set_yticks(positions)
    ax.set_yticklabels(names)
    ax.set_xlabel(ylabel)
    if ylim is not None:
        ax.set_xlim(*ylim)
    ax.grid(alpha=0.3, axis="x")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_rollout_on_image(image, rollout_map, title: str = ""):
    """An image ``(3, H, W)`` in [0, 1] beside its attention-rollout map ``(rows, cols)`` overlaid.

    The map is upsampled to the image size (bilinear) and drawn as a semi-transparent heat map.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import torch
    import torch.nn.functional as F

    array = _as_hwc(image)
    height, width = array.shape[:2]
    heat = torch.as_tensor(rollout_map, dtype=torch.float32)[None, None]
    heat = F.interpolate(heat, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    heat = (heat - heat.min()) / (heat.max() - heat.min() + 1e-12)
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    axes[0].imshow(array)
    axes[0].set_title("input")
    axes[1].imshow(array)
    axes[1].imshow(heat.numpy(), cmap="inferno", alpha=0.6)
    axes[1].set_title("attention rollout (class token)")
    return _image_figure(fig, axes, title)
