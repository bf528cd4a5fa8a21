"""Exact against approximate search at gallery scale, through app.index.VectorIndex: build time,
memory, single-query latency (one search at a time, as the service searches) and recall@k of HNSW
and IVF against the exact flat index's top k, measured in one run on one machine, with a sweep of
each kind's search effort over the index built once (target: p50 <= 5 ms and recall@10 >= 0.99).

With --checkpoint and --manifest the gallery is drawn with the structure of that embedder's own
outputs on phantom people it never trained on (bench/embedding_structure.py). Without them it is
synthetic clusters: people with a centre on the unit sphere, each image the normalised centre plus
isotropic noise (about 0.8 cosine to its centre, 0.64 between two images of a person). Either
way, queries are new images of gallery people. Latencies are measured twice: with faiss's
default threads, as the service searches, and on one thread. Prints one JSON object.

    .venv/bin/python -m bench.ann --json /tmp/ann.json
    .venv/bin/python -m bench.ann --vectors 50000 --queries 50
    .venv/bin/python -m bench.ann --checkpoint runs/cpu-preset/checkpoint.pt \
        --manifest data/phantom-1000/manifest.csv --json /tmp/ann_structured.json
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from app.serving.index import VectorIndex
from app.serving.index_options import IndexOptions
from bench.embedding_structure import EmbeddingStructure, summary

PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 8_192  # rows generated at a time: small temporaries, so freed memory goes back to the OS


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def settle_memory() -> None:
    """Free what can be freed and hand free heap back to the OS, so RSS growth measures the build;
    and reset the peak RSS (VmHWM), where the kernel allows it."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak_resident_bytes() -> int | None:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def images_of(centres, people, noise_scale, rng) -> np.ndarray:
    noise = rng.standard_normal((len(people), centres.shape[1]), dtype=np.float32)
    images = centres[people] + noise_scale * noise
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    return images


def clustered_data(vectors: int, people: int, dim: int, queries: int, seed: int):
    """Gallery vectors (image i is person i % people), and queries with their people."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise_scale = np.float32(0.75 / np.sqrt(dim))  # |noise|^2 ~ 0.5625: cosine 1/1.25 = 0.8
    gallery = np.empty((vectors, dim), dtype=np.float32)
    for start in range(0, vectors, CHUNK):
        people_here = np.arange(start, min(start + CHUNK, vectors)) % people
        gallery[start : start + len(people_here)] = images_of(
            centres, people_here, noise_scale, rng
        )
    query_people = rng.choice(min(people, vectors), size=queries, replace=False)
    query_vectors = images_of(centres, query_people, noise_scale, rng)
    sample = min(CHUNK, vectors)
    own_cosine = float(np.mean(np.sum(gallery[:sample] * centres[np.arange(sample) % people], 1)))
    return gallery, query_vectors, query_people, own_cosine


def structured_data(
    structure: EmbeddingStructure, vectors: int, people: int, queries: int, seed: int
):
    """Gallery vectors drawn with a trained embedder's structure (image i is person i % people,
    its (i // people) // 2-th visit: two images a visit), and queries that are a new visit of
    gallery people."""
    rng = np.random.default_rng(seed)
    centres = structure.centres(people, rng)
    images_per_person = -(-vectors // people)
    visit_count = -(-images_per_person // 2)
    visit_points = np.stack([centres + structure.visits(people, rng) for _ in range(visit_count)])
    gallery = np.empty((vectors, structure.dim), dtype=np.float32)
    for start in range(0, vectors, CHUNK):
        rows = np.arange(start, min(start + CHUNK, vectors))
        gallery[rows] = structure.images(visit_points[(rows // people) // 2, rows % people], rng)
    del visit_points
    query_people = rng.choice(min(people, vectors), size=queries, replace=False)
    new_visits = centres[query_people] + structure.visits(queries, rng)
    return gallery, structure.images(new_visits, rng), query_people


def measured_structure(checkpoint: Path, manifest: Path) -> tuple[EmbeddingStructure, dict]:
    """The structure of the checkpoint's embeddings of a cohort's images (its people should be
    ones it never trained on), embedded as the service embeds."""
    from model.inference import EmbeddingModel
    from training.cohorts import read_cohort
    from training.embedders import model_embedder

    records, _ = read_cohort(manifest)
    model = EmbeddingModel.load(checkpoint, "cpu", backend="auto")
    progress(f"embedding {len(records)} images of {manifest} with {checkpoint}")
    embeddings = model_embedder(model)(records).numpy()
    people = np.array([r.person_id for r in records])
    structure = EmbeddingStructure.fit(embeddings, people, [r.visit_months for r in records])
    source = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": model.sha256,
        "manifest": str(manifest),
        "images": len(records),
        "people": len(set(people)),
        "measured": summary(embeddings, people),
    }
    return structure, source


def progress(message: str) -> None:
    print(f"[ann {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build(kind: str, ids, gallery, dim: int, options: IndexOptions):
    """A VectorIndex of this kind, and what building it cost."""
    progress(f"building {kind} over {len(ids)} vectors")
    if kind == "flat":
        options = replace(options, approximate_from=len(ids) + 1)
    else:
        options = replace(options, approximate_from=0, approximate_kind=kind)
    settle_memory()
    before = resident_bytes()
    started = time.perf_counter()
    index = VectorIndex.build(1, dim, 1, ids, gallery, options)
    seconds = time.perf_counter() - started
    progress(f"built {kind} in {seconds:.1f} s")
    grown = resident_bytes() - before
    peak = peak_resident_bytes()
    assert index.kind == kind, (index.kind, kind)
    serialized = faiss.serialize_index(index._index).nbytes
    return index, {
        "build_seconds": round(seconds, 2),
        "serialized_bytes": int(serialized),
        "rss_growth_bytes": int(grown),
        "rss_peak_growth_bytes": None if peak is None else int(peak - before),
        "bytes_per_vector": round(serialized / len(ids), 1),
    }


def search_all(index: VectorIndex, queries: np.ndarray, k: int):
    """Single-query searches one at a time: latencies (s) and the ids found."""
    index.search(queries[0], k)  # warm-up
    latencies, found = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids, _, _ = index.search(query, k)
        latencies.append(time.perf_counter() - started)
        found.append(ids)
    return np.array(latencies), np.stack(found)


def latency(latencies: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 3),
        "p95_ms": round(1000 * float(np.percentile(latencies, 95)), 3),
        "mean_ms": round(1000 * float(latencies.mean()), 3),
    }


def timed(index: VectorIndex, queries: np.ndarray, k: int):
    """Latencies with faiss's default threads (as the service searches), then on one thread, and
    the ids found. A single-query search still enters OpenMP parallel regions (the flat scan, and
    IndexIDMap turning positions into ids), which cost a wake-up of the other threads each: on a
    busy machine, up to a scheduler tick."""
    latencies, found = search_all(index, queries, k)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        one_thread, _ = search_all(index, queries, k)
    finally:
        faiss.omp_set_num_threads(threads)
    return {**latency(latencies), "one_thread": latency(one_thread)}, found


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    hits = [len(np.intersect1d(f, e)) for f, e in zip(found, exact, strict=True)]
    return round(float(np.mean(hits)) / k, 4)


def own_person_recall(
    found: np.ndarray, query_people: np.ndarray, people: int, exact: np.ndarray
) -> float:
    """Of the query person's own images in the exact top k, the fraction the index also found."""
    own_exact = [(e[e >= 0] % people == p).sum() for e, p in zip(exact, query_people, strict=True)]
    own_found = [
        np.isin(f[f >= 0], e[(e >= 0) & (e % people == p)]).sum()
        for f, e, p in zip(found, exact, query_people, strict=True)
    ]
    return round(float(np.sum(own_found) / max(1, np.sum(own_exact))), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = IndexOptions()
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=0, help="0: vectors / 4")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--kinds", default="hnsw,ivf")
    parser.add_argument("--hnsw-m", type=int, default=defaults.hnsw_m)
    parser.add_argument("--hnsw-ef-construction", type=int, default=defaults.hnsw_ef_construction)
    parser.add_argument("--hnsw-ef-search", type=int, default=defaults.hnsw_ef_search)
    parser.add_argument("--ivf-lists", type=int, default=defaults.ivf_lists)
    parser.add_argument("--ivf-nprobe", type=int, default=defaults.ivf_nprobe)
    parser.add_argument("--ef-sweep", default="64,128,256,512")
    parser.add_argument("--nprobe-sweep", default="16,32,64,128,256")
    parser.add_argument("--target-p50-ms", type=float, default=5.0)
    parser.add_argument("--target-recall", type=float, default=0.99)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint", type=Path, help="draw the gallery with this embedder's structure"
    )
    parser.add_argument(
        "--manifest", type=Path, help="with --checkpoint: phantom people it never trained on"
    )
    parser.add_argument("--json", type=Path, help="also write the JSON object here")
    args = parser.parse_args()
    people = args.people or max(1, args.vectors // 4)
    kinds = [kind for kind in args.kinds.split(",") if kind]
    options = IndexOptions(
        hnsw_m=args.hnsw_m,
        hnsw_ef_construction=args.hnsw_ef_construction,
        hnsw_ef_search=args.hnsw_ef_search,
        ivf_lists=args.ivf_lists,
        ivf_nprobe=args.ivf_nprobe,
    )
    load_at_start = os.getloadavg()

    started = time.perf_counter()
    if args.checkpoint is not None:
        structure, source = measured_structure(args.checkpoint, args.manifest)
        args.dim = structure.dim
        gallery, queries, query_people = structured_data(
            structure, args.vectors, people, args.queries, args.seed
        )
        sample = (np.arange(1_000)[:, None] + people * np.arange(4)).ravel()
        sample = sample[sample < args.vectors]
        drawn = summary(gallery[sample], sample % people)
        data = {
            "data": (
                f"drawn with the structure of a trained embedder's outputs (bench/embedding_"
                f"structure.py): {people} people, image i is person i % {people}, two images a "
                f"visit; queries are {args.queries} images of a new visit of distinct gallery "
                "people; ground truth is the flat index's top k"
            ),
            "structure": {**source, "drawn": drawn},
        }
    else:
        gallery, queries, query_people, own_cosine = clustered_data(
            args.vectors, people, args.dim, args.queries, args.seed
        )
        data = {
            "data": (
                f"clustered, not uniform noise: {people} people, each a centre on the unit "
                f"sphere; image i is person i % {people}, normalised(centre + N(0, (0.75/"
                f"sqrt(dim))^2)), float32; mean cosine image-to-own-centre {own_cosine:.3f}; "
                f"queries are {args.queries} new images of distinct gallery people (not in the "
                "gallery); ground truth is the flat index's top k"
            )
        }
    data_seconds = time.perf_counter() - started
    ids = np.arange(args.vectors, dtype=np.int64)  # image i belongs to person i % people

    index, exact = build("flat", ids, gallery, args.dim, options)
    measured, exact_found = timed(index, queries, args.k)
    exact.update(measured, description=index.description())
    del index

    def judged(measured: dict, found: np.ndarray) -> dict:
        recall_k = recall(found, exact_found)
        one_thread = measured["one_thread"]
        return {
            **measured,
            f"recall@{args.k}": recall_k,
            "own_person_recall": own_person_recall(found, query_people, people, exact_found),
            "speedup_p50": round(exact["p50_ms"] / measured["p50_ms"], 1),
            "speedup_p50_one_thread": round(
                exact["one_thread"]["p50_ms"] / one_thread["p50_ms"], 1
            ),
            "meets_targets": measured["p50_ms"] <= args.target_p50_ms
            and recall_k >= args.target_recall,
            "meets_targets_one_thread": one_thread["p50_ms"] <= args.target_p50_ms
            and recall_k >= args.target_recall,
        }

    results = {}
    for kind in kinds:
        index, result = build(kind, ids, gallery, args.dim, options)
        result["description"] = index.description()
        result.update(judged(*timed(index, queries, args.k)))
        field, effort, values = {
            "hnsw": ("hnsw_ef_search", "ef_search", args.ef_sweep),
            "ivf": ("ivf_nprobe", "nprobe", args.nprobe_sweep),
        }[kind]
        sweep = []
        for value in (int(v) for v in values.split(",") if v):
            index.options = replace(index.options, **{field: value})  # the same built index
            progress(f"{kind} {effort} {value}")
            sweep.append({effort: value, **judged(*timed(index, queries, args.k))})
        result["sweep"] = sweep
        results[kind] = result
        del index

    output = {
        "bench": "ann",
        "vectors": args.vectors,
        "people": people,
        "dim": args.dim,
        "queries": args.queries,
        "k": args.k,
        "seed": args.seed,
        **data,
        "data_seconds": round(data_seconds, 1),
        "search": "VectorIndex.search, one query at a time, k as given, no filter",
        "metrics": (
            f"recall@{args.k}: fraction of the exact top {args.k} ids in the approximate top "
            f"{args.k}, averaged over queries; own_person_recall: of the query person's own images "
            "in the exact top k, the fraction found; speedup_p50: exact p50 / approximate p50, both "
            "with faiss's default threads as the service searches; one_thread: the same queries "
            "with faiss.omp_set_num_threads(1), and speedup_p50_one_thread against the exact one "
            "thread p50"
        ),
        "options": {
            "hnsw_m": options.hnsw_m,
            "hnsw_ef_construction": options.hnsw_ef_construction,
            "hnsw_ef_search": options.hnsw_ef_search,
            "ivf_lists": options.ivf_lists_for(args.vectors),
            "ivf_nprobe": options.ivf_nprobe,
        },
        "cores": os.cpu_count(),
        "faiss_version": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "cpu": cpu_model(),
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "total_seconds": round(time.perf_counter() - started, 1),
        "targets": {"p50_ms": args.target_p50_ms, f"recall@{args.k}": args.target_recall},
        "exact": exact,
        "approximate": results,
        "targets_met": {kind: r["meets_targets"] for kind, r in results.items()},
        "targets_met_one_thread": {
            kind: r["meets_targets_one_thread"] for kind, r in results.items()
        },
        "sweep_settings_meeting_targets": {
            kind: {
                "default_threads": [row[effort] for row in r["sweep"] if row["meets_targets"]],
                "one_thread": [
                    row[effort] for row in r["sweep"] if row["meets_targets_one_thread"]
                ],
            }
            for kind, r in results.items()
            for effort in [{"hnsw": "ef_search", "ivf": "nprobe"}[kind]]
        },
    }
    text = json.dumps(output)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
