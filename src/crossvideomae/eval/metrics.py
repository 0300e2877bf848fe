"""Classification and retrieval metrics.

Tie rule (one rule for every metric here): **ties count against the truth**. A wrong class whose score equals
the true class's score is ranked above it, and a wrong-class gallery item whose similarity equals the best
same-class item's is ranked above it. So a model that outputs the same score for every class gets Acc@1 = 0,
not the share of class 0, and a constant feature gets R@k = 0 unless k exceeds the wrong-class gallery size.

    rank of the truth = 1 + number of competitors scoring >= the truth;   a hit at k  <=>  rank <= k

The confusion matrix is the one exception: it needs a single predicted class and takes ``argmax`` (the lowest
class index among tied maxima), so on exact ties its diagonal can exceed the Acc@1 hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

MAX_INLINE_CLASSES = 50  # larger confusion matrices go to a CSV file only


def true_class_rank(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """scores (N, C), targets (N,) -> (N,) rank of the true class, 1 = best, ties counted against it."""
    true = scores.gather(1, targets[:, None])  # (N, 1)
    competitors = scores >= true  # (N, C), includes the true class itself
    return competitors.sum(dim=1)


def topk_accuracy(
    scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Share (in %) of samples whose true class ranks within the top k, for each k (capped at C)."""
    rank = true_class_rank(scores.float(), targets)
    return {k: 100.0 * (rank <= k).float().mean().item() for k in ks}


def per_class_accuracy(scores: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes,) Acc@1 in % of each class under the tie rule above; NaN for a class with no sample."""
    hit = (true_class_rank(scores.float(), targets) == 1).float()
    count = torch.bincount(targets, minlength=num_classes).float()
    hits = torch.bincount(targets, weights=hit, minlength=num_classes)
    return torch.where(count > 0, 100.0 * hits / count.clamp(min=1), torch.full_like(count, float("nan")))


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts, row = true class, column = predicted class."""
    flat = targets * num_classes + preds
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def first_hit_rank(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    chunk: int = 1024,
) -> torch.Tensor:
    """Rank of the first same-class gallery item for each query, by cosine similarity (ties against the hit).

    query (Q, D), gallery (G, D) -> (Q,) float ranks, ``inf`` where the gallery holds no item of the query's
    class.
    """
    q, g = F.normalize(query.float(), dim=1), F.normalize(gallery.float(), dim=1)
    ranks = []
    for start in range(0, q.shape[0], chunk):
        sim = q[start : start + chunk] @ g.T  # (q, G)
        same = query_labels[start : start + chunk, None] == gallery_labels[None, :]  # (q, G)
        best_same = torch.where(same, sim, torch.full_like(sim, float("-inf"))).amax(dim=1)  # (q,)
        wrong_above = ((sim >= best_same[:, None]) & ~same).sum(dim=1).float()
        rank = torch.where(same.any(dim=1), 1.0 + wrong_above, torch.full_like(wrong_above, float("inf")))
        ranks.append(rank)
    return torch.cat(ranks)


def recall_at_k(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10, 20),
) -> dict[int, float]:
    """R@k in %: share of queries with at least one same-class item among their k nearest gallery items."""
    rank = first_hit_rank(query, query_labels, gallery, gallery_labels)
    return {k: 100.0 * (rank <= k).float().mean().item() for k in ks}


def save_confusion_png(cm: torch.Tensor, path: str | Path, class_names: Sequence[str] | None = None) -> None:
    """Row-normalised confusion matrix as a picture (counts in the cells when the matrix is small)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = cm.float()
    norm = cm / cm.sum(dim=1, keepdim=True).clamp(min=1)
    n = cm.shape[0]
    side = min(4 + 0.35 * n, 24)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= 30:
        names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
        for i in range(n):
            for j in range(n):
                if cm[i, j] > 0:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6, color=color)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def classification_results(
    scores: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    png_path: str | Path | None = None,
    class_names: Sequence[str] | None = None,
) -> dict:
    """Acc@1, Acc@5 (capped at the class count), per-class Acc@1 and the confusion matrix.

    The matrix goes into the dict up to ``MAX_INLINE_CLASSES`` classes; with ``png_path`` it is also drawn
    there and written as CSV beside the picture (rows = true class).
    """
    k5 = min(5, num_classes)
    acc = topk_accuracy(scores, targets, (1, k5))
    cm = confusion_matrix(scores.argmax(dim=1), targets, num_classes)
    per_class = per_class_accuracy(scores, targets, num_classes)
    out: dict = {
        "acc1": acc[1],
        "acc5": acc[k5],
        "num_samples": int(targets.numel()),
        "per_class_acc1": [None if v != v else round(v, 4) for v in per_class.tolist()],
    }
    if num_classes <= MAX_INLINE_CLASSES:
        out["confusion_matrix"] = cm.tolist()
    if png_path is not None:
        png_path = Path(png_path)
        save_confusion_png(cm, png_path, class_names)
        csv_path = png_path.with_suffix(".csv")
        csv_path.write_text("\n".join(",".join(str(int(c)) for c in row) for row in cm.tolist()) + "\n")
        out["confusion_png"], out["confusion_csv"] = str(png_path), str(csv_path)
    return out
