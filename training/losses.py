"""The triplet and AdaTriplet losses with AutoMargin (docs/method.md, "The losses"), and the
paper's other baselines.

Used like pytorch-metric-learning's losses:

    loss_fn = AdaTripletLoss(margin=0.25, beta=0.0, automargin=True)
    loss = loss_fn(embeddings, labels)   # L2-normalised (B, D) embeddings, (B,) identity labels
    loss_fn.end_epoch()                  # AutoMargin: next epoch's margin and beta from this one

Every triplet of a batch is an (anchor, positive) pair of the same identity and a negative of
another identity. They are held as an (M, B) matrix, one row per ordered positive pair and one
column per candidate negative, so memory grows with M * B (M = B * (K - 1) for K images per
identity), never B^3. After each call, `loss_fn.last` holds the numbers of triplets and negative
pairs that made the loss, as 0-d tensors on the embeddings' device (reading them is the caller's
choice of when to synchronise with a GPU). Similarities are computed in float32 whatever autocast does, so that the
mining decisions do not depend on the precision the network ran in.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

TRIPLET_MINING = ("semihard", "hard", "all")


class TripletLoss(nn.Module):
    """Mean hinge max(0, phi_an - phi_ap + margin) over the mined triplets whose hinge is positive.

    Mining, as pytorch-metric-learning's TripletMarginMiner names it, with Delta = phi_ap - phi_an:
    "semihard" keeps 0 < Delta <= margin (the paper's), "hard" keeps Delta <= 0, "all" keeps every
    triplet. With automargin, end_epoch() sets margin = max(0, mean Delta / k_delta) over every
    triplet seen since the previous call, mined or not.
    """

    def __init__(
        self,
        margin: float = 0.25,
        triplets: str = "semihard",
        automargin: bool = False,
        k_delta: float = 2.0,
    ):
        super().__init__()
        if triplets not in TRIPLET_MINING:
            raise ValueError(f"triplets must be one of {TRIPLET_MINING}, not {triplets!r}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, not {margin}")
        if k_delta <= 0:
            raise ValueError(f"k_delta must be > 0, not {k_delta}")
        self.margin = float(margin)
        self.triplets = triplets
        self.automargin = automargin
        self.k_delta = float(k_delta)
        # Sums since the last end_epoch(): Delta over all triplets, their number, phi over all
        # negative pairs, their number. float64 so that an epoch of millions of terms adds up exactly.
        self._epoch_sums: torch.Tensor | None = None
        self.last: dict[str, torch.Tensor] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        similarity, negative = _similarity_and_negatives(embeddings, labels)
        anchor, positive = torch.nonzero(~negative.logical_or(_eye_like(negative)), as_tuple=True)
        delta = similarity[anchor, positive, None] - similarity[anchor]  # (M, B): Delta[a, p, n]
        is_triplet = negative[anchor]
        pair_rows, pair_cols = torch.triu_indices(*negative.shape, offset=1, device=negative.device)
        is_negative_pair = negative[pair_rows, pair_cols]
        pair_similarity = similarity[pair_rows, pair_cols]

        loss, used_triplets = self._triplet_term(delta, is_triplet)
        self.last = {"triplets": used_triplets}
        loss = loss + self._pair_term(pair_similarity, is_negative_pair)
        self._accumulate(delta, is_triplet, pair_similarity, is_negative_pair)
        return loss

    def _triplet_term(
        self, delta: torch.Tensor, is_triplet: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.triplets == "semihard":
            mined = is_triplet & (delta > 0) & (delta <= self.margin)
        elif self.triplets == "hard":
            mined = is_triplet & (delta <= 0)
        else:
            mined = is_triplet
        hinge = self.margin - delta
        used = mined & (hinge > 0)
        count = used.sum()
        return torch.where(used, hinge, 0.0).sum() / count.clamp(min=1), count

    def _pair_term(self, pair_similarity: torch.Tensor, is_negative_pair: torch.Tensor):
        self.last["pairs"] = torch.zeros((), dtype=torch.long, device=pair_similarity.device)
        return 0.0

    def _accumulate(self, delta, is_triplet, pair_similarity, is_negative_pair) -> None:
        with torch.no_grad():
            sums = torch.stack(
                [
                    torch.where(is_triplet, delta, 0.0).sum(dtype=torch.float64),
                    is_triplet.sum(dtype=torch.float64),
                    torch.where(is_negative_pair, pair_similarity, 0.0).sum(dtype=torch.float64),
                    is_negative_pair.sum(dtype=torch.float64),
                ]
            )
        self._epoch_sums = sums if self._epoch_sums is None else self._epoch_sums + sums

    def end_epoch(self) -> None:
        """Close the epoch: with automargin, set the next margin (and beta) from its statistics.

        Under torch.distributed the sums of every process are added first, so that all processes
        carry on with the same values.
        """
        sums = self._epoch_sums
        if sums is None:
            sums = torch.zeros(4, dtype=torch.float64)
        if dist.is_available() and dist.is_initialized():
            sums = sums.clone()
            dist.all_reduce(sums)
        if self.automargin:
            self._set_margins(*sums.tolist())
        self._epoch_sums = None

    def _set_margins(self, delta_sum, triplets, negative_sum, negative_pairs) -> None:
        if triplets > 0:
            self.margin = max(0.0, delta_sum / triplets / self.k_delta)

    def get_extra_state(self) -> dict[str, Any]:
        return {"margin": self.margin}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.margin = float(state["margin"])


class AdaTripletLoss(TripletLoss):
    """The triplet loss plus lambda_an * mean(phi_ij - beta) over the unordered negative pairs with
    phi_ij >= beta. With automargin, end_epoch() also sets
    beta = 1 - (1 - mean phi over every negative pair seen) / k_an."""

    def __init__(
        self,
        margin: float = 0.25,
        beta: float = 0.0,
        lambda_an: float = 1.0,
        triplets: str = "semihard",
        automargin: bool = False,
        k_delta: float = 2.0,
        k_an: float = 2.0,
    ):
        super().__init__(margin, triplets, automargin, k_delta)
        if not -1.0 <= beta <= 1.0:
            raise ValueError(f"beta is a cosine similarity, within [-1, 1], not {beta}")
        if k_an <= 0:
            raise ValueError(f"k_an must be > 0, not {k_an}")
        self.beta = float(beta)
        self.lambda_an = float(lambda_an)
        self.k_an = float(k_an)

    def _pair_term(self, pair_similarity: torch.Tensor, is_negative_pair: torch.Tensor):
        kept = is_negative_pair & (pair_similarity >= self.beta)
        count = kept.sum()
        self.last["pairs"] = count
        excess = torch.where(kept, pair_similarity - self.beta, 0.0)
        return self.lambda_an * excess.sum() / count.clamp(min=1)

    def _set_margins(self, delta_sum, triplets, negative_sum, negative_pairs) -> None:
        super()._set_margins(delta_sum, triplets, negative_sum, negative_pairs)
        if negative_pairs > 0:
            self.beta = 1.0 - (1.0 - negative_sum / negative_pairs) / self.k_an

    def get_extra_state(self) -> dict[str, Any]:
        return {"margin": self.margin, "beta": self.beta}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.beta = float(state["beta"])


class LibraryLoss(nn.Module):
    """A pytorch-metric-learning loss (and optional miner) behind the same interface."""

    def __init__(self, loss: nn.Module, miner: nn.Module | None = None):
        super().__init__()
        self.loss = loss
        self.miner = miner
        self.last: dict[str, torch.Tensor] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = embeddings.float()
        mined = None if self.miner is None else self.miner(embeddings, labels)
        return self.loss(embeddings, labels, mined)

    def end_epoch(self) -> None:
        pass


class CosineClassifier(nn.Module):
    """The identity term beside a metric loss: cross-entropy over the training people of scaled
    cosine similarities between an embedding and one learned centre per person (NormFace, Wang
    et al., 2017), with label smoothing (Luo et al., 2019). It works on the same unit embeddings
    that the service compares, so it asks for nothing a search does not use."""

    def __init__(
        self, num_classes: int, embedding_dim: int, scale: float = 16.0, smoothing: float = 0.1
    ):
        super().__init__()
        self.centres = nn.Parameter(torch.randn(num_classes, embedding_dim))
        self.scale = float(scale)
        self.smoothing = float(smoothing)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        centres = nn.functional.normalize(self.centres, dim=1)
        with torch.autocast(embeddings.device.type, enabled=False):
            logits = self.scale * embeddings.float() @ centres.T
        return nn.functional.cross_entropy(
            logits, labels.to(embeddings.device), label_smoothing=self.smoothing
        )


LOSSES = (
    "triplet",
    "triplet-am",
    "adatriplet",
    "adatriplet-am",
    "contrastive",
    "arcface",
    "softtriple",
    "pml-triplet",
)


def build_loss(
    name: str,
    *,
    num_classes: int,
    embedding_dim: int,
    margin: float = 0.25,
    beta: float = 0.0,
    lambda_an: float = 1.0,
    triplets: str = "semihard",
    k_delta: float = 2.0,
    k_an: float = 2.0,
) -> nn.Module:
    """The loss a training run names. The "-am" variants learn margin (and beta) by AutoMargin;
    the classification losses (arcface, softtriple) need the number of training identities."""
    if name in ("triplet", "triplet-am"):
        return TripletLoss(margin, triplets, automargin=name.endswith("-am"), k_delta=k_delta)
    if name in ("adatriplet", "adatriplet-am"):
        automargin = name.endswith("-am")
        return AdaTripletLoss(margin, beta, lambda_an, triplets, automargin, k_delta, k_an)
    from pytorch_metric_learning import distances, losses, miners

    cosine = distances.CosineSimilarity()
    if name == "contrastive":
        return LibraryLoss(losses.ContrastiveLoss(pos_margin=1.0, neg_margin=0.0, distance=cosine))
    if name == "arcface":
        return LibraryLoss(losses.ArcFaceLoss(num_classes, embedding_dim))
    if name == "softtriple":
        return LibraryLoss(losses.SoftTripleLoss(num_classes, embedding_dim))
    if name == "pml-triplet":
        return LibraryLoss(
            losses.TripletMarginLoss(margin=margin, distance=cosine),
            miners.TripletMarginMiner(margin=margin, type_of_triplets=triplets, distance=cosine),
        )
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def _similarity_and_negatives(
    embeddings: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if embeddings.ndim != 2 or labels.ndim != 1 or len(labels) != len(embeddings):
        raise ValueError(
            f"expected embeddings (B, D) and labels (B,), got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )
    labels = labels.to(embeddings.device)
    with torch.autocast(embeddings.device.type, enabled=False):
        embeddings = embeddings.float()
        similarity = embeddings @ embeddings.T
    return similarity, labels[:, None] != labels[None, :]


def _eye_like(mask: torch.Tensor) -> torch.Tensor:
    return torch.eye(len(mask), dtype=torch.bool, device=mask.device)
