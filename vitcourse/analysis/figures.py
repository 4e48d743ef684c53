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
        histories: ``{name: history}`` or ``{name: [history, ...]}`` (one run per seed). A history
            is a list of per-epoch dicts with ``epoch``, ``train_loss``, ``train_accuracy`` and
            optionally ``test_loss``, ``test_accuracy``; the runs of one name must share their
            epochs. Training curves are dashed, test curves solid. With several runs, a line is
            their mean and a shaded band spans the lowest to the highest run at each epoch.
        title: the figure's title.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for k, (name, runs) in enumerate(histories.items()):
        runs = [runs] if isinstance(runs, list) and runs and isinstance(runs[0], dict) else list(runs)
        if not runs or any(not run for run in runs):
            raise ValueError(f"histories[{name!r}] must be a non-empty history or a list of them")
        epochs = [h["epoch"] for h in runs[0]]
        if any([h["epoch"] for h in run] != epochs for run in runs):
            raise ValueError(f"the runs of histories[{name!r}] must share their epochs")
        for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
            for split, style in (("train", "--"), ("test", "-")):
                if f"{split}_{key}" not in runs[0][0]:
                    continue
                values = np.array([[h[f"{split}_{key}"] for h in run] for run in runs])  # (runs, epochs)
                label = f"{name} {split}" + (f" (mean of {len(runs)})" if len(runs) > 1 else "")
                ax.plot(epochs, values.mean(axis=0), color=f"C{k}", ls=style, label=label)
                if len(runs) > 1:
                    ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=f"C{k}", alpha=0.2, lw=0)
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

    The map is drawn as each patch's share of the rollout over the uniform share (``map /
    map.mean()``: 1 everywhere for a flat map), upsampled to the image size (bilinear), as a
    semi-transparent heat map with a colour bar. The colours span the map's own range, so that
    its structure shows, and the colour bar says how large that range is: a map whose colours
    look striking may vary by a few percent. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import torch
    import torch.nn.functional as F

    array = _as_hwc(image)
    height, width = array.shape[:2]
    heat = torch.as_tensor(rollout_map, dtype=torch.float64)
    heat = (heat / heat.mean())[None, None]  # share relative to the uniform share
    heat = F.interpolate(heat, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.4))
    axes[0].imshow(array)
    axes[0].set_title("input")
    axes[1].imshow(array)
    shown = axes[1].imshow(heat.numpy(), cmap="inferno", alpha=0.6)
    axes[1].set_title("attention rollout (class token)")
    _image_figure(fig, axes, title)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04, label="share / uniform share")
    return fig


# ---- chapter 1.4: the whole ViT ------------------------------------------------------------


def _batch_shape(shape) -> str:
    """``(1, 5, 64)`` -> ``"(B, 5, 64)"``: the batch dimension by its name."""
    return "(" + ", ".join(["B", *(str(size) for size in shape[1:])]) + ")"


def plot_vit_architecture(config, shapes: dict, title: str = ""):
    """Draw a Pre-LN ViT as boxes and arrows, each part labelled with its size and its output shape.

    Args:
        config: the model's :class:`~vitcourse.models.vit.ViTConfig` (``model.config``): patch
            size, width, depth, heads, MLP ratio, classes, pooling are read from it.
        shapes: :func:`vitcourse.analysis.shapes.layer_shapes` of that model, ``{module name:
            (input shape, output shape)}``, from which every shape in the figure is printed
            (``B`` stands for the batch dimension). Needs ``patch_embed``, ``blocks.0`` and its
            ``norm1``, ``attn``, ``norm2``, ``mlp``, ``mlp.fc1``, the final ``norm`` or
            ``fc_norm``, and ``head``.
        title: the figure's title.

    Top to bottom: image, patch embedding, class token, position embeddings, one block drawn
    with its two residual branches (LayerNorm -> attention -> add, LayerNorm -> MLP -> add) and
    its repeat count, the final LayerNorm, the pooling and the linear head. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    if not config.norm_first:
        raise ValueError("plot_vit_architecture draws Pre-LN models (norm_first=True); got a Post-LN config")
    if not config.num_classes:
        raise ValueError("plot_vit_architecture draws a classifier; got num_classes=0 (no head)")
    needed = ["patch_embed", "blocks.0", "blocks.0.norm1", "blocks.0.attn", "blocks.0.norm2", "blocks.0.mlp",
              "blocks.0.mlp.fc1", "head", "fc_norm" if config.global_pool == "avg" else "norm"]
    missing = [name for name in needed if name not in shapes]
    if missing:
        raise ValueError(f"shapes lacks {missing}: pass layer_shapes(model, x) of a VisionTransformer with this config")

    dim, (ph, pw) = config.embed_dim, config.patch_size
    rows, cols = config.img_size[0] // ph, config.img_size[1] // pw
    hidden = shapes["blocks.0.mlp.fc1"][1][-1]
    colours = {"io": "#eeeeee", "embed": "#cfe2f3", "norm": "#fff2cc", "attn": "#fce5cd", "mlp": "#d9ead3",
               "head": "#e6dcf0"}
    fig, ax = plt.subplots(figsize=(7.6, 9.8))
    ax.axis("off")
    cx, width, height, step = 3.3, 4.6, 0.95, 1.35   # box centre, size, and the distance between boxes
    shape_x = cx + width / 2 + 0.25                  # where the shapes are written

    def box(y, text, kind, shape=None, note=None):
        ax.add_patch(FancyBboxPatch((cx - width / 2, y - height / 2), width, height,
                                    boxstyle="round,pad=0.02,rounding_size=0.15", fc=colours[kind], ec="0.35", lw=1))
        ax.text(cx, y, text, ha="center", va="center", fontsize=10)
        if shape is not None:
            ax.text(shape_x, y + (0.17 if note else 0), _batch_shape(shape), ha="left", va="center",
                    fontsize=10, family="monospace")
        if note:
            ax.text(shape_x, y - 0.28, note, ha="left", va="center", fontsize=8.5, color="0.35")

    def arrow(y_from, y_to, x=cx):
        ax.annotate("", xy=(x, y_to), xytext=(x, y_from), arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.1))

    def plus(y):  # a marker stays round whatever the axes' aspect ratio
        ax.plot([cx], [y], marker="o", ms=17, mfc="white", mec="0.3", mew=1.1, zorder=3)
        ax.text(cx, y, "+", ha="center", va="center", fontsize=13, zorder=4)

    # the embedding
    y = 0.0
    box(y, f"image  {config.in_chans} × {config.img_size[0]} × {config.img_size[1]}", "io", shapes["patch_embed"][0])
    sequence = shapes["blocks.0"][0]
    embedding = [(f"patch embedding: {rows * cols} patches of {ph} × {pw},\n"
                  f"Linear({config.in_chans * ph * pw} → {dim}) on each", "embed", shapes["patch_embed"][1], None)]
    if config.class_token:
        embedding.append(("prepend the class token", "embed", sequence, None))
    embedding.append(("+ position embeddings", "embed", sequence, "learned, one per token"))
    for text, kind, shape, note in embedding:
        arrow(y - height / 2, y - step + height / 2)
        y -= step
        box(y, text, kind, shape, note)

    # one block: LN -> attention -> add, LN -> MLP -> add, with the residual branches on the left
    top = y - 0.75
    fork_1 = top - 0.6
    ax.plot([cx, cx], [y - height / 2, fork_1], color="0.3", lw=1.1)   # into the block, to the first fork
    y_norm1 = fork_1 - 0.95
    y_attn = y_norm1 - step
    y_plus1 = y_attn - 1.2
    fork_2 = y_plus1 - 0.5
    y_norm2 = fork_2 - 0.95
    y_mlp = y_norm2 - step
    y_plus2 = y_mlp - 1.2
    bottom = y_plus2 - 0.45
    box(y_norm1, "LayerNorm", "norm", shapes["blocks.0.norm1"][1])
    box(y_attn, f"multi-head self-attention:\n{config.num_heads} heads of {dim // config.num_heads}", "attn",
        shapes["blocks.0.attn"][1])
    box(y_norm2, "LayerNorm", "norm", shapes["blocks.0.norm2"][1])
    box(y_mlp, f"MLP: Linear({dim} → {hidden}), GELU,\nLinear({hidden} → {dim})", "mlp", shapes["blocks.0.mlp"][1],
        f"hidden {_batch_shape(shapes['blocks.0.mlp.fc1'][1])}")
    plus(y_plus1)
    plus(y_plus2)
    arrow(fork_1, y_norm1 + height / 2)
    arrow(y_norm1 - height / 2, y_attn + height / 2)
    arrow(y_attn - height / 2, y_plus1 + 0.3)
    arrow(y_plus1 - 0.3, y_norm2 + height / 2)
    arrow(y_norm2 - height / 2, y_mlp + height / 2)
    arrow(y_mlp - height / 2, y_plus2 + 0.3)
    stream_x = cx - width / 2 - 0.55
    for fork, joint in ((fork_1, y_plus1), (fork_2, y_plus2)):
        ax.plot([cx], [fork], marker="o", ms=4, color="0.3")
        ax.plot([cx, stream_x, stream_x], [fork, fork, joint], color="0.3", lw=1.1)
        ax.annotate("", xy=(cx - 0.3, joint), xytext=(stream_x, joint), arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.1))
    right = shape_x + 3.3                             # the frame reaches past the shapes and notes
    ax.add_patch(FancyBboxPatch((stream_x - 0.45, bottom), right - stream_x + 0.45, top - bottom,
                                boxstyle="round,pad=0.02,rounding_size=0.2", fc="none", ec="0.45", lw=1.2, ls="--"))
    ax.text(stream_x - 0.3, top - 0.3, f"block × {config.depth}  (Pre-LN)", ha="left", va="center", fontsize=10,
            weight="bold")
    ax.text(stream_x - 0.12, (top + bottom) / 2, "residual stream", rotation=90, ha="right", va="center",
            fontsize=8.5, color="0.35")

    # the head
    if config.global_pool == "avg":
        ending = [("mean of the patch tokens", "head", shapes["fc_norm"][0]),
                  ("LayerNorm (final)", "norm", shapes["fc_norm"][1])]
    else:
        ending = [("LayerNorm (final)", "norm", shapes["norm"][1]),
                  ("the class token's vector, x[:, 0]", "head", shapes["head"][0])]
    ending.append((f"linear head: Linear({dim} → {config.num_classes})", "head", shapes["head"][1]))
    y = y_plus2
    for k, (text, kind, shape) in enumerate(ending):
        y_next = bottom - 0.85 if k == 0 else y - step
        arrow((y - 0.3) if k == 0 else (y - height / 2), y_next + height / 2)
        y = y_next
        box(y, text, kind, shape, "logits" if k == len(ending) - 1 else None)
    ax.set_xlim(0, right + 0.2)
    ax.set_ylim(y - 0.8, 0.7)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig
