"""TripletLoss and AdaTripletLoss (training/losses.py) against the loop-by-loop oracle
(training/reference_loss.py), against pytorch-metric-learning, and on the empty cases."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, losses, miners
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from training.losses import AdaTripletLoss, CosineClassifier, TripletLoss
from training.reference_loss import (
    pair_terms,
    reference_adatriplet_loss,
    reference_automargin,
    reference_triplet_loss,
    triplet_terms,
)

MINING = ("semihard", "hard", "all")
TOL = 1e-5


def make_batch(seed: int, low: int = 9, high: int = 32, dim: int = 16, spread: float | None = None):
    """A (B, D) float64 leaf and (B,) labels: identities of 2-4 images each, B in [low - 1, high],
    shuffled, with arbitrary label values. Each image is its identity's centre times `spread` plus
    unit noise, so that Delta covers both signs and the margins."""
    rng = random.Random(seed)
    target = rng.randint(low, high)
    sizes = []
    while target - sum(sizes) >= 2:
        sizes.append(rng.randint(2, min(4, target - sum(sizes))))
    ids = rng.sample(range(1000), len(sizes))
    labels = torch.tensor([ids[i] for i, k in enumerate(sizes) for _ in range(k)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    generator = torch.Generator().manual_seed(seed)
    centres = {i: torch.randn(dim, generator=generator, dtype=torch.float64) for i in ids}
    spread = rng.uniform(0.0, 2.0) if spread is None else spread
    x = torch.stack([spread * centres[int(v)] for v in labels])
    x = x + torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return x, labels


def value_and_grad(loss_fn, x: torch.Tensor, labels: torch.Tensor):
    """The loss of the normalised embeddings and its gradient w.r.t. the raw leaf x."""
    leaf = x.detach().clone().requires_grad_(True)
    loss = loss_fn(F.normalize(leaf, dim=1), labels)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach().double(), grad


def assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=TOL, rtol=0, check_dtype=False)


def _params(seed: int) -> tuple[float, float, float]:
    rng = random.Random(1000 + seed)
    return rng.uniform(0.0, 0.6), rng.uniform(-0.3, 0.6), rng.choice([0.0, 0.5, 1.0, 2.0])


@pytest.mark.parametrize("triplets", MINING)
@pytest.mark.parametrize("seed", range(8))
def test_triplet_loss_matches_reference(seed, triplets):
    x, labels = make_batch(seed)
    margin, _, _ = _params(seed)
    loss_fn = TripletLoss(margin=margin, triplets=triplets)
    value, grad = value_and_grad(loss_fn, x, labels)
    ref_value, ref_grad = value_and_grad(
        lambda e, y: reference_triplet_loss(e, y, margin, triplets), x, labels
    )
    assert_close(value, ref_value)
    assert_close(grad, ref_grad)
    assert loss_fn.last["triplets"] == len(
        triplet_terms(F.normalize(x, dim=1), labels, margin, triplets)
    )
    assert loss_fn.last["pairs"] == 0


@pytest.mark.parametrize("triplets", MINING)
@pytest.mark.parametrize("seed", range(8))
def test_adatriplet_loss_matches_reference(seed, triplets):
    x, labels = make_batch(100 + seed)
    margin, beta, lambda_an = _params(seed)
    loss_fn = AdaTripletLoss(margin=margin, beta=beta, lambda_an=lambda_an, triplets=triplets)
    value, grad = value_and_grad(loss_fn, x, labels)
    ref_value, ref_grad = value_and_grad(
        lambda e, y: reference_adatriplet_loss(e, y, margin, beta, lambda_an, triplets), x, labels
    )
    assert_close(value, ref_value)
    assert_close(grad, ref_grad)
    embeddings = F.normalize(x, dim=1)
    assert loss_fn.last["triplets"] == len(triplet_terms(embeddings, labels, margin, triplets))
    assert loss_fn.last["pairs"] == len(pair_terms(embeddings, labels, beta))


def test_last_holds_counts_without_leaving_the_device():
    x, labels = make_batch(0)
    for loss_fn in (TripletLoss(), AdaTripletLoss()):
        loss_fn(F.normalize(x, dim=1), labels)
        for count in loss_fn.last.values():
            assert count.ndim == 0 and not count.is_floating_point() and not count.requires_grad


@pytest.mark.parametrize("triplets", ["semihard", "all"])
@pytest.mark.parametrize("ada", [True, False], ids=["adatriplet", "triplet"])
def test_automargin_follows_the_reference_over_epochs(ada, triplets):
    loss_fn = (
        AdaTripletLoss(automargin=True, triplets=triplets)
        if ada
        else TripletLoss(automargin=True, triplets=triplets)
    )
    margin, beta = 0.25, 0.0
    assert loss_fn.margin == margin
    if ada:
        assert loss_fn.beta == beta
    for epoch in range(4):
        batches = [make_batch(10 * epoch + i, high=16, spread=1.0 + 0.3 * epoch) for i in range(3)]
        batches = [(F.normalize(x, dim=1), labels) for x, labels in batches]
        for embeddings, labels in batches:
            value = loss_fn(embeddings, labels)
            if ada:
                expected = reference_adatriplet_loss(
                    embeddings, labels, margin, beta, 1.0, triplets
                )
            else:
                expected = reference_triplet_loss(embeddings, labels, margin, triplets)
            assert_close(value.detach().double(), expected)
        margin, new_beta = reference_automargin(batches, 2.0, 2.0, margin, beta)
        beta = new_beta if ada else beta
        loss_fn.end_epoch()
        assert loss_fn.margin == pytest.approx(margin, abs=TOL)
        assert margin != pytest.approx(0.25, abs=1e-3)  # the statistics did move it
        if ada:
            assert loss_fn.beta == pytest.approx(beta, abs=TOL)
        else:
            assert not hasattr(loss_fn, "beta")


def test_automargin_uses_k_delta_and_k_an_and_clamps_the_margin_at_zero():
    x, labels = make_batch(3, spread=1.5)
    embeddings = F.normalize(x, dim=1)
    loss_fn = AdaTripletLoss(automargin=True, k_delta=4.0, k_an=3.0)
    loss_fn(embeddings, labels)
    loss_fn.end_epoch()
    margin, beta = reference_automargin([(embeddings, labels)], 4.0, 3.0)
    assert (loss_fn.margin, loss_fn.beta) == pytest.approx((margin, beta), abs=TOL)
    # Positives opposite, a negative equal to the anchor: mean Delta < 0, so the margin becomes 0.
    u, v = torch.eye(2, dtype=torch.float64)
    loss_fn(torch.stack([u, -u, u, v]), torch.tensor([0, 0, 1, 1]))
    loss_fn.end_epoch()
    assert loss_fn.margin == 0.0


def test_automargin_keeps_values_when_an_epoch_has_nothing_to_measure():
    loss_fn = AdaTripletLoss(margin=0.3, beta=0.1, automargin=True)
    loss_fn.end_epoch()  # no forward call at all
    assert (loss_fn.margin, loss_fn.beta) == (0.3, 0.1)
    x, _ = make_batch(4, low=10, high=10)
    embeddings = F.normalize(x, dim=1)
    loss_fn(embeddings, torch.zeros(len(x), dtype=torch.long))  # one identity: no negative at all
    loss_fn.end_epoch()
    assert (loss_fn.margin, loss_fn.beta) == (0.3, 0.1)
    distinct = torch.arange(len(x))  # no triplet, but negative pairs: only beta moves
    loss_fn(embeddings, distinct)
    loss_fn.end_epoch()
    _, beta = reference_automargin([(embeddings, distinct)], 2.0, 2.0)
    assert loss_fn.margin == 0.3
    assert loss_fn.beta == pytest.approx(beta, abs=TOL)


def test_end_epoch_without_automargin_changes_nothing():
    x, labels = make_batch(5)
    loss_fn = AdaTripletLoss(margin=0.2, beta=0.05)
    loss_fn(F.normalize(x, dim=1), labels)
    loss_fn.end_epoch()
    assert (loss_fn.margin, loss_fn.beta) == (0.2, 0.05)


def _assert_zero_with_zero_gradient(loss_fn, x, labels):
    leaf = x.detach().clone().requires_grad_(True)
    loss = loss_fn(F.normalize(leaf, dim=1), labels)
    assert loss.ndim == 0
    assert loss.item() == 0.0
    loss.backward()
    assert leaf.grad is None or torch.count_nonzero(leaf.grad) == 0


def _separated_clusters():
    """Four identities of three images each on orthogonal axes: every Delta is about 1."""
    labels = torch.arange(4).repeat_interleave(3)
    x = torch.eye(16, dtype=torch.float64)[labels] * 10
    return x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)), labels


@pytest.mark.parametrize("triplets", ["semihard", "hard"])
def test_no_mined_triplet_gives_exactly_zero_and_zero_gradient(triplets):
    x, labels = _separated_clusters()
    for loss_fn in (
        TripletLoss(triplets=triplets),
        AdaTripletLoss(beta=0.5, triplets=triplets),  # every negative pair is near 0 < beta
    ):
        _assert_zero_with_zero_gradient(loss_fn, x, labels)
        assert loss_fn.last["triplets"] == 0
        assert loss_fn.last["pairs"] == 0


def test_no_negative_pair_above_beta_leaves_only_the_triplet_term():
    x, labels = make_batch(7, spread=0.5)
    ada = AdaTripletLoss(margin=0.3, beta=1.0, lambda_an=2.0)
    plain = TripletLoss(margin=0.3)
    ada_value, ada_grad = value_and_grad(ada, x, labels)
    plain_value, plain_grad = value_and_grad(plain, x, labels)
    assert ada.last["pairs"] == 0
    assert ada.last["triplets"] == plain.last["triplets"] > 0
    assert_close(ada_value, plain_value)
    assert_close(ada_grad, plain_grad)


def test_all_labels_distinct_has_no_triplet_but_a_pair_term():
    x, _ = make_batch(8, low=12, high=12)
    labels = torch.arange(len(x)) * 7
    _assert_zero_with_zero_gradient(TripletLoss(triplets="all"), x, labels)
    loss_fn = AdaTripletLoss(beta=-0.2, triplets="all")
    value, grad = value_and_grad(loss_fn, x, labels)
    ref_value, ref_grad = value_and_grad(
        lambda e, y: reference_adatriplet_loss(e, y, 0.25, -0.2, 1.0, "all"), x, labels
    )
    assert torch.isfinite(value) and value > 0
    assert loss_fn.last["triplets"] == 0 and loss_fn.last["pairs"] > 0
    assert_close(value, ref_value)
    assert_close(grad, ref_grad)


def test_a_single_identity_has_no_negative_and_gives_zero():
    x, _ = make_batch(9, low=6, high=6)
    labels = torch.full((len(x),), 3)
    for loss_fn in (TripletLoss(triplets="all"), AdaTripletLoss(beta=-1.0, triplets="all")):
        _assert_zero_with_zero_gradient(loss_fn, x, labels)
        assert loss_fn.last["triplets"] == 0 and loss_fn.last["pairs"] == 0


def _pml_triplet(margin: float, triplets: str):
    cosine = distances.CosineSimilarity()
    loss = losses.TripletMarginLoss(margin=margin, distance=cosine)
    miner = miners.TripletMarginMiner(margin=margin, type_of_triplets=triplets, distance=cosine)
    return lambda e, y: loss(e, y, miner(e, y))


# pytorch-metric-learning's miner keeps Delta <= margin for "all" (and adds > 0 / <= 0 for
# "semihard" / "hard"), ours keeps every triplet for "all"; its AvgNonZeroReducer then averages
# only the losses > 0, which drops every triplet with Delta >= margin, so the losses coincide.
@pytest.mark.parametrize("triplets", MINING)
@pytest.mark.parametrize("seed", range(6))
def test_triplet_loss_agrees_with_pytorch_metric_learning(seed, triplets):
    x, labels = make_batch(200 + seed)
    x = x.float()
    margin, _, _ = _params(seed)
    value, grad = value_and_grad(TripletLoss(margin=margin, triplets=triplets), x, labels)
    pml_value, pml_grad = value_and_grad(_pml_triplet(margin, triplets), x, labels)
    assert_close(value, pml_value)
    assert_close(grad, pml_grad)


@pytest.mark.parametrize("triplets", MINING)
def test_delta_exactly_zero_is_hard_not_semihard_as_in_pytorch_metric_learning(triplets):
    # For anchor 0 and positive 1, negative 2 is a copy of the positive: Delta is exactly 0.
    u, v, w = F.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    x = torch.stack([u, v, v, w])
    labels = torch.tensor([0, 0, 1, 1])
    loss_fn = TripletLoss(margin=0.25, triplets=triplets)
    value, grad = value_and_grad(loss_fn, x, labels)
    pml_value, pml_grad = value_and_grad(_pml_triplet(0.25, triplets), x, labels)
    ref_value, ref_grad = value_and_grad(
        lambda e, y: reference_triplet_loss(e, y, 0.25, triplets), x.double(), labels
    )
    assert_close(value, pml_value)
    assert_close(grad, pml_grad)
    assert_close(value, ref_value)
    assert_close(grad, ref_grad)


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation produces."""

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                self.largest = max(self.largest, item.numel())
        return out


def test_batch_of_128_runs_without_b_cubed_tensors_and_agrees_with_reference_and_pml():
    people, images, dim = 32, 4, 128
    labels = torch.arange(people).repeat_interleave(images)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(people, dim, generator=generator)[labels] + torch.randn(
        len(labels), dim, generator=generator
    )
    b = len(labels)
    leaf = x.clone().requires_grad_(True)
    with _LargestTensor() as mode:
        loss = AdaTripletLoss()(F.normalize(leaf, dim=1), labels)
        loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()
    # Every (anchor, positive, negative) is B (K - 1) (B - K) = 47,616 here; B^3 is 2,097,152.
    assert mode.largest < b**3 / 8
    ref_value, ref_grad = value_and_grad(
        lambda e, y: reference_adatriplet_loss(e, y, 0.25, 0.0, 1.0, "semihard"), x.double(), labels
    )
    assert_close(loss.detach().double(), ref_value)
    assert_close(leaf.grad, ref_grad)
    value, grad = value_and_grad(TripletLoss(), x, labels)
    pml_value, pml_grad = value_and_grad(_pml_triplet(0.25, "semihard"), x, labels)
    assert_close(value, pml_value)
    assert_close(grad, pml_grad)


@pytest.mark.parametrize("cls", [TripletLoss, AdaTripletLoss])
def test_invalid_arguments_raise_value_error(cls):
    with pytest.raises(ValueError):
        cls(triplets="easy")
    with pytest.raises(ValueError):
        cls(margin=-0.1)
    loss_fn = cls()
    embeddings = F.normalize(torch.randn(6, 4), dim=1)
    with pytest.raises(ValueError):
        loss_fn(embeddings, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError):
        loss_fn(embeddings[0], torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        loss_fn(embeddings, torch.zeros(6, 1, dtype=torch.long))


def test_mining_runs_in_float32_under_autocast():
    """On a GPU the network runs in bfloat16: the loss still compares float32 similarities."""
    x, labels = make_batch(3)
    embeddings = F.normalize(x, dim=1).to(torch.bfloat16)
    expected = AdaTripletLoss(automargin=True)(embeddings.float(), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_fn = AdaTripletLoss(automargin=True)
        loss = loss_fn(embeddings, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == expected.item()


def test_the_identity_term_is_cross_entropy_over_scaled_cosines_to_the_centres():
    torch.manual_seed(8)
    classifier = CosineClassifier(num_classes=5, embedding_dim=16, scale=16.0, smoothing=0.1)
    embeddings = F.normalize(torch.randn(10, 16), dim=1)
    labels = torch.arange(10) % 5
    cosines = embeddings @ F.normalize(classifier.centres, dim=1).T
    log_p = torch.log_softmax(16.0 * cosines, dim=1)
    expected = -(0.9 * log_p[torch.arange(10), labels] + 0.1 * log_p.mean(dim=1)).mean()
    assert torch.allclose(classifier(embeddings, labels), expected, atol=1e-6)


def test_the_identity_term_learns_to_put_each_embedding_nearest_its_own_centre():
    torch.manual_seed(9)
    classifier = CosineClassifier(num_classes=3, embedding_dim=8)
    points = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    optimiser = torch.optim.Adam([points, *classifier.parameters()], lr=0.05)
    first = None
    for _ in range(100):
        loss = classifier(F.normalize(points, dim=1), labels)
        first = loss.item() if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    cosines = F.normalize(points, dim=1) @ F.normalize(classifier.centres, dim=1).T
    assert torch.equal(cosines.argmax(dim=1), labels) and loss.item() < first / 2
