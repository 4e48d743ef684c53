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
