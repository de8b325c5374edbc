"""Pictures of a run, written to PNG files: training curves and test images with their predicted labels."""
from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from .fashion_mnist import TEXT_LABELS
from .persist import atomic_write


def plot_history(histories: dict, path: os.PathLike | str) -> Path:
    """Loss and accuracies per epoch for each named `History`, side by side, saved as a PNG."""
    # A bare Figure, not pyplot: no display needed, and a notebook's backend is left alone.
    fig = Figure(figsize=(9, 3.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, history in histories.items():
        epochs = history.column("epoch")
        ax_loss.plot(epochs, history.column("loss"), marker="o", label=name)
        line, = ax_acc.plot(epochs, history.column("test_acc"), marker="o", label=f"{name}: test")
        ax_acc.plot(epochs, history.column("train_acc"), linestyle="--", marker="x", color=line.get_color(),
                    label=f"{name}: train")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def show_predictions(images, labels, preds, path: os.PathLike | str, num_cols: int = 5) -> Path:
    """A grid of test images titled 'true / predicted' (the book's show_fashion_mnist), saved as a PNG."""
    num_cols = min(num_cols, len(images))
    num_rows = (len(images) + num_cols - 1) // num_cols
    fig = Figure(figsize=(1.8 * num_cols, 2.1 * num_rows))
    for i, (image, true, pred) in enumerate(zip(images, labels, preds)):
        ax = fig.add_subplot(num_rows, num_cols, i + 1)
        ax.imshow(image, cmap="gray")
        ax.set_title(f"{TEXT_LABELS[true]}\n{TEXT_LABELS[pred]}" + ("" if true == pred else " ✗"), fontsize=9)
        ax.axis("off")
    fig.suptitle("true label / predicted", fontsize="small")
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
