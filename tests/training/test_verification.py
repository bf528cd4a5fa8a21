"""Verification metrics against brute force over every pair, and the report built on them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_curve

from training import verification
from training.evaluate import retrieval_metrics
from training.protocol import KS, evaluate_by_interval, protocol_groups
from training.records import ImageRecord
from training.report import (
    verification_table,
    write_figure,
)
from training.verification import verification_metrics

FPRS = (1e-1, 1e-2, 1e-3)


def all_scores(queries, query_labels, gallery, gallery_labels) -> tuple[np.ndarray, np.ndarray]:
    """Every pair's score, flattened, as the module defines it (embeddings L2-normalised in
    float32, dot products summed in float64 and rounded to float32), but in one numpy product; and
    whether the pair is genuine."""
    q, g = (
        torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=1).double()
        for x in (queries, gallery)
    )
    scores = (q.numpy() @ g.numpy().T).astype(np.float32).astype(np.float64)
    genuine = np.asarray(query_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    return scores.ravel(), genuine.ravel()


def reference(scores: np.ndarray, genuine: np.ndarray, fprs=FPRS) -> dict:
    """The definitions followed literally: scikit-learn's ROC over every distinct score, and loops
    over the distinct genuine scores for the thresholds."""
    gen, imp = scores[genuine], scores[~genuine]
    n_gen, n_imp = len(gen), len(imp)
    fpr, tpr, _ = roc_curve(genuine, scores, drop_intermediate=False)
    false_accepts, true_accepts = np.rint(fpr * n_imp), np.rint(tpr * n_gen)
    out = {"tpr_at_fpr": {}, "threshold_at_fpr": {}}
    distinct = np.unique(gen)
    for f in fprs:
        allowed = math.floor(f * n_imp + 1e-9)
        tpr_max = true_accepts[false_accepts <= allowed].max() / n_gen
        qualifying = [g for g in distinct if (imp >= g).sum() <= allowed]
        threshold = min(qualifying) if qualifying else None
        assert tpr_max == (0.0 if threshold is None else (gen >= threshold).mean())
        out["tpr_at_fpr"][repr(f)] = tpr_max
        out["threshold_at_fpr"][repr(f)] = threshold
    # EER: where the piecewise-linear ROC crosses FPR = FNR, i.e. FPR + TPR - 1 = 0.
    d = false_accepts * n_gen + true_accepts * n_imp - n_gen * n_imp
    i = int(np.argmax(d >= 0))
    t = -d[i - 1] / (d[i] - d[i - 1])
    out["eer"] = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    out["eer_threshold"] = max(g for g in distinct if (gen < g).mean() <= out["eer"] + 1e-12)
    return out


def check_against_reference(queries, query_labels, gallery, gallery_labels) -> dict:
    result = verification_metrics(queries, query_labels, gallery, gallery_labels, fprs=FPRS)
    scores, genuine = all_scores(queries, query_labels, gallery, gallery_labels)
    expected = reference(scores, genuine)
    assert result["genuine_pairs"] == genuine.sum()
    assert result["impostor_pairs"] == (~genuine).sum()
    assert result["tpr_at_fpr"] == pytest.approx(expected["tpr_at_fpr"], abs=1e-15)
    assert result["threshold_at_fpr"] == expected["threshold_at_fpr"]
    assert result["eer"] == pytest.approx(expected["eer"], abs=1e-12)
    assert result["eer_threshold"] == expected["eer_threshold"]
    edges = result["genuine_histogram"]["edges"]
    for kind, mask in (("genuine", genuine), ("impostor", ~genuine)):
        counts, _ = np.histogram(np.clip(scores[mask], -1, 1), bins=np.array(edges))
        assert result[f"{kind}_histogram"]["counts"] == counts.tolist(), kind
        assert result[f"{kind}_histogram"]["edges"] == edges
    json.dumps(result, allow_nan=False)
    return result


def clustered(rng, n_people, per_gallery, n_queries, dim, noise):
    centres = rng.normal(size=(n_people, dim))
    g_labels = np.repeat(np.arange(n_people), per_gallery)
    q_labels = rng.integers(0, n_people, n_queries)
    gallery = centres[g_labels] + noise * rng.normal(size=(len(g_labels), dim))
    queries = centres[q_labels] + noise * rng.normal(size=(n_queries, dim))
    return queries, q_labels, gallery, g_labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_continuous_scores(seed):
    rng = np.random.default_rng(seed)
    result = check_against_reference(*clustered(rng, 15, 2, 70, 8, noise=1.2))
    assert 0 < result["eer"] < 0.5


def tied_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit vectors of four +-1/2 entries: every score between two is a multiple of 1/4."""
    vectors = np.zeros((n, dim), dtype=np.float32)
    for row in vectors:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return vectors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_with_tied_scores(seed):
    """Unit vectors with four entries of +-1/2: every score is a multiple of 1/4, exactly, so
    genuine and impostor scores tie everywhere, and some pairs are duplicates."""
    rng = np.random.default_rng(seed)
    dim, n_people = 6, 8
    people = tied_vectors(rng, n_people, dim)
    g_labels = np.repeat(np.arange(n_people), 3)
    q_labels = rng.integers(0, n_people, 50)
    own = rng.random((len(g_labels), 1)) < 0.6
    gallery = np.where(own, people[g_labels], tied_vectors(rng, len(g_labels), dim))
    own = rng.random((50, 1)) < 0.5
    queries = np.where(own, people[q_labels], tied_vectors(rng, 50, dim))
    check_against_reference(queries, q_labels, gallery, g_labels)


def test_perfect_separation():
    """One-hot people: genuine pairs score 1, impostors 0."""
    eye = np.eye(5)
    g_labels, q_labels = np.arange(5).repeat(2), np.array([0, 1, 2, 3, 4, 4, 2])
    result = verification_metrics(eye[q_labels], q_labels, eye[g_labels], g_labels)
    assert result["tpr_at_fpr"] == {"0.01": 1.0, "0.001": 1.0}
    assert result["threshold_at_fpr"] == {"0.01": 1.0, "0.001": 1.0}
    assert result["eer"] == 0.0
    assert result["eer_threshold"] == 1.0
    assert (result["genuine_pairs"], result["impostor_pairs"]) == (14, 56)
    assert result["genuine_histogram"]["counts"][-1] == 14
    assert result["impostor_histogram"]["counts"][40] == 56  # 0 opens the 41st of 80 bins


def test_every_impostor_above_every_genuine():
    eye = np.eye(2)
    # Queries of person 0 look like person 1's gallery image and the other way round.
    result = verification_metrics(eye[[1, 0]], [0, 1], eye[[0, 1]], [0, 1])
    assert result["eer"] == 1.0
    assert result["tpr_at_fpr"] == {"0.01": 0.0, "0.001": 0.0}
    assert result["threshold_at_fpr"] == {"0.01": None, "0.001": None}


def test_scores_unrelated_to_identity_give_chance():
    rng = np.random.default_rng(3)
    queries, gallery = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    result = verification_metrics(
        queries, rng.integers(0, 10, 300), gallery, rng.integers(0, 10, 300)
    )
    assert result["eer"] == pytest.approx(0.5, abs=0.03)
    assert result["tpr_at_fpr"]["0.01"] == pytest.approx(0.01, abs=0.01)


def test_small_chunks_give_the_same_answer(monkeypatch):
    rng = np.random.default_rng(4)
    data = clustered(rng, 1500, 2, 3000, 32, noise=0.9)
    monkeypatch.setattr(verification, "_CHUNK_ELEMENTS", 3000 * 3000)  # one product
    whole = verification_metrics(*data)
    monkeypatch.setattr(verification, "_CHUNK_ELEMENTS", 3000 * 97 + 5)  # 97 queries a chunk
    chunked = verification_metrics(*data)
    assert chunked == whole
    assert whole["genuine_pairs"] == 6000
    assert 0 < whole["eer"] < 0.1


def test_rejects_what_has_no_answer():
    eye = np.eye(3)
    with pytest.raises(ValueError, match="genuine"):
        verification_metrics(eye, [0, 1, 2], eye, [3, 4, 5])  # nobody in the gallery
    with pytest.raises(ValueError, match="impostor"):
        verification_metrics(eye, [1, 1, 1], eye, [1, 1, 1])  # everybody is the same person
    with pytest.raises(ValueError, match="genuine"):
        verification_metrics(np.zeros((0, 3)), [], eye, [0, 1, 2])
    with pytest.raises(ValueError, match="share D"):
        verification_metrics(eye, [0, 1, 2], np.eye(4), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="query_labels"):
        verification_metrics(eye, [0, 1], eye, [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        verification_metrics(eye * np.nan, [0, 1, 2], eye, [0, 1, 2])
    for fprs in [(), (0.01, 0.01), (1.5,), (-0.1,)]:
        with pytest.raises(ValueError, match="fprs"):
            verification_metrics(eye, [0, 1, 2], eye, [0, 1, 2], fprs=fprs)
    with pytest.raises(ValueError, match="bins"):
        verification_metrics(eye, [0, 1, 2], eye, [0, 1, 2], bins=0)


def _records(visits: dict[str, list[float]]) -> list[ImageRecord]:
    return [
        ImageRecord(
            person_id=p, visit_months=m, path=Path(f"/{p}/{s}{m}.png"), body_part="KNEE", side=s
        )
        for p, months in visits.items()
        for m in months
        for s in ("L", "R")
    ]


def test_report_curves_table_and_figure(tmp_path):
    rng = np.random.default_rng(5)
    people = {f"p{i}": [0, 12, 24] if i % 2 else [0, 24, 48] for i in range(30)}
    records = _records(people)
    centres = {p: rng.normal(size=16) for p in people}
    embeddings = torch.nn.functional.normalize(
        torch.tensor(
            np.stack([centres[r.person_id] + 0.9 * rng.normal(size=16) for r in records]),
            dtype=torch.float32,
        ),
        dim=1,
    )

    labels, gallery, queries = protocol_groups(records)
    report = evaluate_by_interval(records, lambda _: embeddings)
    assert list(report["intervals"]) == ["12", "24", "48", "all"]
    for name, interval in report["intervals"].items():
        curve = interval["cmc_curve"]
        assert len(curve) == 20 and curve == sorted(curve) and curve[-1] <= 1.0
        for k in KS:
            assert curve[k - 1] == interval["cmc"][str(k)]
        alone = retrieval_metrics(
            embeddings[queries[name]], labels[queries[name]], embeddings[gallery], labels[gallery]
        )
        assert curve[0] == pytest.approx(alone["cmc"][1])

    verdict = report["verification"]
    assert verdict["genuine_pairs"] == 2 * 2 * 2 * 30  # 2 follow-ups x 2 knees x 2 baseline knees
    table = verification_table(verdict)
    assert f"| EER | {100 * verdict['eer']:.2f}% |" in table
    assert f"| TPR at FPR 0.1% | {100 * verdict['tpr_at_fpr']['0.001']:.2f}% |" in table
    assert f"| genuine pairs | {verdict['genuine_pairs']} |" in table
    assert f"| impostor pairs | {verdict['impostor_pairs']} |" in table

    path = tmp_path / "evaluation.png"
    write_figure(path, json.loads(json.dumps(report)))
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 600 and image.height > 300
        image.verify()
    assert path.stat().st_size > 20_000


def tied_cohort(seed: int, n_queries: int, n_gallery: int, n_people: int, dim: int = 6):
    """Unit vectors of four +-1/2 entries (every score a multiple of 1/4, so genuine and impostor
    scores tie everywhere) mixed with continuous ones, some duplicated across people."""
    rng = np.random.default_rng(seed)
    people = tied_vectors(rng, n_people, dim)
    g_labels = np.concatenate([np.arange(n_people), rng.integers(0, n_people, n_gallery)])
    q_labels = rng.integers(0, n_people, n_queries)
    own = rng.random((len(g_labels), 1)) < 0.6
    gallery = np.where(own, people[g_labels], tied_vectors(rng, len(g_labels), dim))
    own = rng.random((n_queries, 1)) < 0.5
    queries = np.where(own, people[q_labels], tied_vectors(rng, n_queries, dim))
    queries[::5] = rng.normal(size=(len(queries[::5]), dim))
    queries[1::7] = gallery[rng.integers(0, len(gallery), len(queries[1::7]))]  # duplicates
    return queries, q_labels, gallery, g_labels


MANY_FPRS = (0.5, 0.1, 0.05, 1e-2, 1e-3, 1e-4, 0.0, 1.0)


@pytest.mark.parametrize("seed", range(6))
def test_bounds_and_exact_counts_agree_with_counting_everything(seed, monkeypatch):
    """The answers from exact counts at a few genuine scores are those from exact counts at all,
    whatever the bin width; and brute force agrees."""
    rng = np.random.default_rng(100 + seed)
    if seed % 2:
        data = tied_cohort(seed, int(rng.integers(20, 80)), int(rng.integers(10, 60)), 8)
    else:
        data = clustered(rng, 12, 3, int(rng.integers(20, 80)), 4, noise=rng.uniform(0.3, 2.0))
    bins = int(rng.choice([80, 7, 1000]))
    fast = verification_metrics(*data, fprs=MANY_FPRS, bins=bins)
    monkeypatch.setattr(verification, "_FINE_BINS", 1)  # fine bins = reported bins: wide
    assert verification_metrics(*data, fprs=MANY_FPRS, bins=bins) == fast
    monkeypatch.setattr(verification, "_FINE_BINS", 1 << 16)  # very fine bins
    assert verification_metrics(*data, fprs=MANY_FPRS, bins=bins) == fast
    monkeypatch.setattr(  # the second pass counts at every distinct genuine score
        verification, "_needs_exact_counts", lambda lower, *_: torch.ones_like(lower, dtype=bool)
    )
    assert verification_metrics(*data, fprs=MANY_FPRS, bins=bins) == fast
    scores, genuine = all_scores(*data)
    expected = reference(scores, genuine, fprs=MANY_FPRS)
    assert fast["threshold_at_fpr"] == expected["threshold_at_fpr"]
    assert fast["tpr_at_fpr"] == pytest.approx(expected["tpr_at_fpr"], abs=1e-15)
    assert fast["eer"] == pytest.approx(expected["eer"], abs=1e-12)
    assert fast["eer_threshold"] == expected["eer_threshold"]


def test_second_pass_counts_only_where_the_bins_leave_answers_open(monkeypatch):
    """On continuous scores few genuine scores need the second pass; none when the bins settle
    every answer."""
    rng = np.random.default_rng(7)
    data = clustered(rng, 300, 2, 1500, 32, noise=0.9)
    counted = []
    count = verification._impostor_counts
    monkeypatch.setattr(
        verification,
        "_impostor_counts",
        lambda values, *rest: counted.append(len(values)) or count(values, *rest),
    )
    verification_metrics(*data)
    assert 0 < counted[0] < 300
    eye = np.eye(5)  # genuine pairs score 1, impostors 0: the bins settle everything
    labels = np.arange(5)
    verification_metrics(eye[labels], labels, eye[labels], labels)
    assert len(counted) == 1


@pytest.mark.parametrize("bins", [1, 7, 80, 1000])
def test_fine_bins_add_up_to_the_reported_histc_bins(bins):
    """Scores a few float32 steps either side of every reported edge, random ones, and ones just
    outside [-1, 1] land in the fine bins so that each run of `split` of them holds exactly what
    torch.histc puts in the reported bin."""
    edges = torch.linspace(-1, 1, bins + 1)
    near = [edges]
    for direction in (math.inf, -math.inf):
        step = edges
        for _ in range(40):
            step = torch.nextafter(step, torch.full_like(step, direction))
            near.append(step)
    outside = torch.tensor([1.0000001, -1.0000001, 1.0000002])
    uniform = torch.rand(100_000, generator=torch.Generator().manual_seed(bins)) * 2 - 1
    scores = torch.cat([*near, uniform, outside])
    split = verification._fine_split(bins)
    fine = verification._histogram(scores, bins * split)
    expected = torch.histc(scores.clamp(-1, 1), bins, -1, 1).double()
    assert torch.equal(fine.view(bins, split).sum(1), expected)
    assert fine.sum() == len(scores)


def test_bin_of_each_sorted_value():
    uniform = torch.rand(5000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    values = torch.cat([uniform, torch.tensor([-1.0, 1.0, 1.0000001])]).unique()
    bins = verification._bin_of_sorted(values, 1280)
    one_at_a_time = torch.stack([torch.histc(v.clamp(-1, 1), 1280, -1, 1).argmax() for v in values])
    assert torch.equal(bins, one_at_a_time)


def test_rounding_thresholds_split_float64_products_exactly():
    """x >= threshold(v) exactly when x rounds to a float32 >= v, ties to even included."""
    rng = np.random.default_rng(8)
    values = torch.cat(
        [
            torch.tensor([0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 1.2e-38, 0.25, 3.0, -0.375]),
            torch.as_tensor(rng.normal(size=2000), dtype=torch.float32),
            torch.as_tensor(rng.normal(size=2000) * 1e-30, dtype=torch.float32),
        ]
    )
    thresholds = verification._rounding_threshold(values)
    below = torch.nextafter(thresholds, torch.full_like(thresholds, -math.inf))
    above = torch.nextafter(thresholds, torch.full_like(thresholds, math.inf))
    midpoints = (values.double() + torch.nextafter(values, -values.new_full((), math.inf))) / 2
    for x in (thresholds, below, above, midpoints):
        assert torch.equal(x >= thresholds, x.float() >= values)
    assert (below.float() < values).all() and (thresholds.float() >= values).all()


def test_exact_counts_where_needed_settle_every_answer():
    """The decisions alone, on integer scores with many ties and bins of a few levels: exact
    impostor counts only where _needs_exact_counts asks, lower bounds elsewhere, give the answers
    that exact counts everywhere give."""
    rng = np.random.default_rng(9)
    fprs = (0.5, 0.2, 0.1, 0.05, 0.01, 0.0, 1.0)
    for _ in range(400):
        levels = int(rng.integers(2, 40))
        genuine = torch.as_tensor(rng.integers(levels // 3, levels, int(rng.integers(1, 30))))
        impostor = torch.as_tensor(rng.integers(0, levels - levels // 4, int(rng.integers(1, 300))))
        n_genuine, n_impostor = len(genuine), len(impostor)
        values, counts = torch.unique(genuine, return_counts=True)
        genuine_ge = counts.flip(0).cumsum(0).flip(0)
        genuine_gt = genuine_ge - counts
        impostor_ge = (impostor[None, :] >= values[:, None]).sum(1)
        impostor_gt = (impostor[None, :] > values[:, None]).sum(1)
        width = int(rng.integers(1, 8))  # levels per bin
        per_bin = torch.bincount(impostor // width, minlength=levels // width + 1)
        lower, upper = verification._count_bounds(per_bin, values // width)
        assert ((lower <= impostor_gt) & (impostor_ge <= upper)).all()

        needed = verification._needs_exact_counts(
            lower, upper, genuine_ge, genuine_gt, fprs, n_genuine, n_impostor
        )
        partly_ge = torch.where(needed, impostor_ge, lower)
        partly_gt = torch.where(needed, impostor_gt, lower)
        args = (values.double(), genuine_ge, genuine_gt)
        assert verification._equal_error(
            *args, partly_ge, partly_gt, n_genuine, n_impostor
        ) == verification._equal_error(*args, impostor_ge, impostor_gt, n_genuine, n_impostor)
        rates = (fprs, n_genuine, n_impostor)
        assert verification._rates_at_fprs(
            values.double(), genuine_ge, partly_ge, *rates
        ) == verification._rates_at_fprs(values.double(), genuine_ge, impostor_ge, *rates)
