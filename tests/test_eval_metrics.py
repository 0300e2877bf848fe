"""Metrics, heads and feature collection of crossvideomae.eval against hand-computed cases and references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.optim import param_groups_layer_decay
from timm.utils import accuracy as timm_accuracy

from crossvideomae.config import ConfigError, EvalConfig, load_config
from crossvideomae.data import eval_collate
from crossvideomae.engine.checkpoint import CheckpointError
from crossvideomae.eval.features import eval_loader, gather_in_order, predict_probs
from crossvideomae.eval.heads import Classifier
from crossvideomae.eval.metrics import (
    classification_results,
    confusion_matrix,
    first_hit_rank,
    per_class_accuracy,
    recall_at_k,
    topk_accuracy,
)
from crossvideomae.eval.probes import knn_retrieval, probe_scores, train_attentive_probe, train_linear_probe
from crossvideomae.models import build_video_encoder

# Hand case: sample 1 ties its true class with a wrong one (and loses the tie), sample 2 is all ties.
SCORES = torch.tensor([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.2, 0.2, 0.2], [0.9, 0.05, 0.05]])
TARGETS = torch.tensor([1, 0, 2, 0])


def test_topk_accuracy_hand_case_with_ties():
    # ranks of the truth (ties against it): 1, 3, 3, 1
    assert topk_accuracy(SCORES, TARGETS, (1, 2, 3)) == {1: 50.0, 2: 50.0, 3: 100.0}


def test_topk_accuracy_matches_timm_without_ties():
    g = torch.Generator().manual_seed(0)
    scores, targets = torch.randn(200, 10, generator=g), torch.randint(0, 10, (200,), generator=g)
    ours = topk_accuracy(scores, targets, (1, 5))
    ref1, ref5 = timm_accuracy(scores, targets, topk=(1, 5))
    assert ours[1] == pytest.approx(ref1.item(), abs=1e-4)
    assert ours[5] == pytest.approx(ref5.item(), abs=1e-4)


def test_constant_scores_score_zero():
    scores = torch.zeros(6, 4)
    assert topk_accuracy(scores, torch.arange(6) % 4, (1, 3, 4)) == {1: 0.0, 3: 0.0, 4: 100.0}


def test_per_class_accuracy_and_confusion_hand_case():
    per_class = per_class_accuracy(SCORES, TARGETS, 4)
    assert per_class[:3].tolist() == [50.0, 100.0, 0.0]
    assert math.isnan(per_class[3].item())  # class 3 has no sample
    cm = confusion_matrix(SCORES.argmax(dim=1), TARGETS, 3)  # argmax picks class 0 on sample 2's tie
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]


def test_classification_results_writes_png(tmp_path):
    res = classification_results(SCORES, TARGETS, 3, tmp_path / "cm.png")
    assert res["acc1"] == 50.0 and res["acc5"] == 100.0  # Acc@5 capped at 3 classes
    assert res["per_class_acc1"] == [50.0, 100.0, 0.0]
    assert (tmp_path / "cm.png").stat().st_size > 1000


def test_recall_at_k_hand_case_with_ties():
    gallery = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    gallery_labels = torch.tensor([1, 0, 0, 2])
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    query_labels = torch.tensor([0, 0, 3])
    # query 0: the same-class item ties (cosine 1) with a wrong one and loses -> rank 2
    # query 1: nearest item is of its class -> rank 1;  query 2: class absent from the gallery -> never a hit
    ranks = first_hit_rank(query, query_labels, gallery, gallery_labels)
    assert ranks.tolist() == [2.0, 1.0, math.inf]
    r = recall_at_k(query, query_labels, gallery, gallery_labels, ks=(1, 2, 4))
    assert r == pytest.approx({1: 100 / 3, 2: 200 / 3, 4: 200 / 3})


def test_recall_at_k_matches_sorting_reference():
    g = torch.Generator().manual_seed(1)
    gallery, gl = torch.randn(60, 8, generator=g), torch.randint(0, 5, (60,), generator=g)
    query, ql = torch.randn(25, 8, generator=g), torch.randint(0, 5, (25,), generator=g)
    sims = nn.functional.normalize(query, dim=1) @ nn.functional.normalize(gallery, dim=1).T
    order = sims.argsort(dim=1, descending=True)
    for k in (1, 5, 10, 20):
        ref = 100.0 * sum(bool((gl[order[i, :k]] == ql[i]).any()) for i in range(25)) / 25
        assert recall_at_k(query, ql, gallery, gl, (k,))[k] == pytest.approx(ref)
    chunked = first_hit_rank(query, ql, gallery, gl, chunk=7)
    assert torch.equal(chunked, first_hit_rank(query, ql, gallery, gl))


def test_layer_decay_groups_get_expected_lr_scales():
    cfg = load_config("tiny", ["model.depth=3"])
    model = Classifier(build_video_encoder(cfg.model), num_classes=5)
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.75)
    names = {id(p): n for n, p in model.named_parameters()}
    scale = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    decay = {names[id(p)]: g["weight_decay"] for g in groups for p in g["params"]}
    depth = 3
    assert len(scale) == sum(1 for _ in model.parameters())
    for name, s in scale.items():
        if name.startswith("encoder.patch_embed"):
            expected = 0.75 ** (depth + 1)
        elif name.startswith("encoder.blocks."):
            expected = 0.75 ** (depth - int(name.split(".")[2]))
        else:  # final norm and head
            assert name.startswith(("encoder.norm", "head")), name
            expected = 1.0
        assert s == pytest.approx(expected), name
    assert decay["head.weight"] == 0.05 and decay["head.bias"] == 0.0


def test_gather_in_order_sorts_and_drops_sampler_padding():
    local = {"index": torch.tensor([3, 0, 2, 0, 1]), "x": torch.tensor([[3.0], [0.0], [2.0], [0.0], [1.0]])}
    out = gather_in_order(local)
    assert out["index"].tolist() == [0, 1, 2, 3] and out["x"].squeeze(1).tolist() == [0.0, 1.0, 2.0, 3.0]


class _MultiView(torch.utils.data.Dataset):
    """Items of V random views. Video 2 "fails to decode" and is replaced by video 3, as the data package does:
    the item then carries video 3's content and index and reports the failure in ``skipped``."""

    def __init__(self, n: int = 5, views: int = 3):
        g = torch.Generator().manual_seed(0)
        self.videos = torch.randn(n, views, 3, 2, 4, 4, generator=g)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        skipped = [("video2.mp4", "broken")] if i == 2 else []
        i = 3 if i == 2 else i
        item = {"video": self.videos[i], "label": torch.tensor(i % 2), "kind": torch.tensor(-1)}
        return {**item, "index": torch.tensor(i), "skipped": skipped}


def test_multiview_average_equals_manual_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 4 * 4, 4))
    data = _MultiView()
    loader = eval_loader(data, batch_size=2, num_workers=0, collate_fn=eval_collate)
    out, skipped = predict_probs(model, loader, torch.device("cpu"))
    assert skipped == [("video2.mp4", "broken")] and out["index"].tolist() == [0, 1, 3, 4]  # left out
    with torch.no_grad():
        manual = torch.stack([model(data.videos[i]).softmax(-1).mean(0) for i in (0, 1, 3, 4)])
    torch.testing.assert_close(out["probs"], manual)
    assert out["label"].tolist() == [0, 1, 1, 0]


def test_linear_probe_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3
    y = torch.arange(400) % 4
    x = centers[y] + torch.randn(400, 16, generator=g) + 50.0  # a large offset the BatchNorm removes
    cfg = EvalConfig(epochs=20, warmup_epochs=2, batch_size=64)
    probe, losses = train_linear_probe(x[:300], y[:300], 4, cfg, seed=0, device=torch.device("cpu"))
    assert losses[-1] < losses[0]
    assert topk_accuracy(probe_scores(probe, x[300:]), y[300:], (1,))[1] > 95.0


def _order_tokens(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 8, 16) tokens = a position code per token + an 'object' vector on one token; the class is whether
    the object sits in the first or the second half. Every clip's mean over tokens carries no class signal."""
    pos = torch.randn(8, 16, generator=g)
    obj = torch.randn(16, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    where = y * 4 + torch.randint(0, 4, (n,), generator=g)  # token 0-3 (class 0) or 4-7 (class 1)
    x = pos.expand(n, 8, 16).clone() + 0.05 * torch.randn(n, 8, 16, generator=g)
    x[torch.arange(n), where] += obj
    return x, y


def test_attentive_probe_reads_what_mean_pooling_loses():
    g = torch.Generator().manual_seed(0)
    x, y = _order_tokens(400, g)
    cfg = EvalConfig(epochs=30, lr=0.1, warmup_epochs=3, batch_size=32, attn_epochs=40, attn_batch_size=32)
    cpu = torch.device("cpu")
    attn, losses = train_attentive_probe(x[:300], y[:300], 2, cfg, seed=0, device=cpu)
    assert losses[-1] < losses[0]
    assert topk_accuracy(probe_scores(attn, x[300:]), y[300:], (1,))[1] >= 95.0
    linear, _ = train_linear_probe(x[:300].mean(1), y[:300], 2, cfg, seed=0, device=cpu)
    assert topk_accuracy(probe_scores(linear, x[300:].mean(1)), y[300:], (1,))[1] <= 70.0


def test_knn_centring_removes_a_shared_offset():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    signal = torch.randn(3, 8, generator=g)[y] + 0.3 * torch.randn(60, 8, generator=g)
    x = 1e4 + signal  # every clip shares a large offset: uncentred cosines are all 1 to float32 precision
    plain = knn_retrieval(x[:30], y[:30], x[30:], y[30:], (1,), center=False)["R@1"]
    centred = knn_retrieval(x[:30], y[:30], x[30:], y[30:], (1,), center=True)["R@1"]
    assert centred == 100.0 and plain < 80.0


def test_classifier_from_attentive_probe_starts_with_the_probes_predictions(tmp_path):
    """LP-FT (eval.ft_head_init): the classifier's pooling and head take the probe's weights, so before any
    fine-tuning step it scores clips exactly as the probe scored the frozen encoder's tokens."""
    cfg = load_config("tiny", ["model.depth=1"])
    encoder = build_video_encoder(cfg.model).eval()
    video = torch.randn(6, 3, cfg.model.num_frames, cfg.model.img_size, cfg.model.img_size)
    with torch.no_grad():
        tokens = encoder.forward_features(video)
    ecfg = EvalConfig(attn_epochs=2, attn_batch_size=3)
    probe, _ = train_attentive_probe(
        tokens, torch.tensor([0, 1, 2, 0, 1, 2]), 3, ecfg, 0, torch.device("cpu")
    )
    path = tmp_path / "attentive_probe-pretrained-label.safetensors"
    save_file({k: v.contiguous() for k, v in probe.state_dict().items()}, path)
    model = Classifier(encoder, num_classes=3, pool="attentive").eval()
    report = model.load_head(path)
    assert report["tensors"] == len(probe.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(video), probe(tokens), atol=1e-5)
        assert not torch.allclose(
            Classifier(encoder, 3, pool="attentive").eval()(video), probe(tokens), atol=1e-3
        )
    with pytest.raises(CheckpointError, match="shapes differ"):
        Classifier(encoder, num_classes=4, pool="attentive").load_head(path)
    with pytest.raises(ConfigError, match="eval.ft_pool=attentive"):
        Classifier(encoder, num_classes=3).load_head(path)
    with pytest.raises(CheckpointError, match="not found"):
        model.load_head(tmp_path / "missing.safetensors")
