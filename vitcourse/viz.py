"""The figures the chapters draw, and a helper to show the package's own source on a page.

Each function takes plain tensors or numbers (what the other modules return) and draws on a
matplotlib figure; none computes anything the chapters rely on as a result.
"""

from __future__ import annotations

import inspect


def show_source(obj) -> None:
    """Display the source of a package function or class, so the book shows the code it runs."""
    source = inspect.getsource(obj)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # plain Python: print it
        print(source)
        return
    display(Markdown(f"```python\n{source}```"))


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
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_similarity_grid(similarity, grid, titles=None, ncols: int = 4, suptitle: str = ""):
    """Small multiples of token-to-token similarity maps on the patch grid.

    Args:
        similarity: ``(K, rows * cols)``: row k is the similarity of one chosen token to all
            grid tokens (e.g. cosine similarity of position embeddings).
        grid: ``(rows, cols)``.
        titles: K panel titles.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    sim = similarity.detach().cpu().numpy() if hasattr(similarity, "detach") else np.asarray(similarity)
    rows, cols = grid
    count = sim.shape[0]
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 2.2 * nrows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= count:
            ax.axis("off")
            continue
        image = ax.imshow(sim[k].reshape(rows, cols), cmap="viridis", vmin=-1, vmax=1)
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
    for r, c in zip(rows, cols):
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
