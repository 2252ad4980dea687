"""Nearest-neighbour libraries for the similar-image index, compared on this machine.

``--vectors`` (100,000) random ``int8`` embeddings of :data:`core.embedding.DIMENSIONS` numbers
(scaled as :func:`core.embedding.quantise` scales them) and ``--queries`` (1,000) others; each
library builds an HNSW graph with the same settings (M 16, ef_construction 128, ef_search 64)
on all cores, cosine distance, and answers the queries one at a time (as the API does). Truth
is the exact top 24 by cosine (NumPy). Random vectors have no clusters, the hardest case for
a graph index: real embeddings score higher recall at the same settings.

Printed per library: build seconds, query p50 and p95 in milliseconds, recall@24, and the
index's memory per vector. Libraries that are not installed are skipped (``pip install
usearch hnswlib faiss-cpu``). Last line: ``vector_index best=<library> ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core import embedding  # noqa: E402

M, EF_CONSTRUCTION, EF_SEARCH, K = 16, 128, 64, 24


def data(n: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        embedding.quantise(rng.standard_normal((n, embedding.DIMENSIONS))),
        embedding.quantise(rng.standard_normal((queries, embedding.DIMENSIONS))),
    )


def exact(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The true top K ids of each query by cosine."""
    unit, q = embedding.normalised(vectors), embedding.normalised(queries)
    out = []
    for start in range(0, len(q), 100):
        scores = q[start : start + 100] @ unit.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        out.append(top)
    return np.concatenate(out)


def with_usearch(vectors, threads):
    from usearch.index import Index

    index = Index(ndim=vectors.shape[1], metric="cos", dtype="i8", connectivity=M,
                  expansion_add=EF_CONSTRUCTION, expansion_search=EF_SEARCH)
    index.add(np.arange(len(vectors)), vectors, threads=threads)
    return (lambda q: index.search(q, K).keys), index.memory_usage


def with_hnswlib(vectors, threads):
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=M, ef_construction=EF_CONSTRUCTION)
    index.add_items(vectors.astype(np.float32), np.arange(len(vectors)), num_threads=threads)
    index.set_ef(EF_SEARCH)
    memory = len(vectors) * (vectors.shape[1] * 4 + M * 2 * 4 + 16)  # float32 vectors and level-0 links
    return (lambda q: index.knn_query(q.astype(np.float32), K, num_threads=1)[0][0]), memory


def with_faiss(vectors, threads):
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWSQ(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    unit = embedding.normalised(vectors)
    index.train(unit)
    index.add(unit)
    index.hnsw.efSearch = EF_SEARCH

    def search(q):
        faiss.omp_set_num_threads(1)
        return index.search(embedding.normalised(q)[None] if q.ndim == 1 else embedding.normalised(q), K)[1][0]

    memory = len(faiss.serialize_index(index))
    return search, memory


LIBRARIES = {"usearch": with_usearch, "hnswlib": with_hnswlib, "faiss-cpu": with_faiss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    vectors, queries = data(args.vectors, args.queries)
    truth = exact(vectors, queries)
    unit = embedding.normalised(vectors)
    times = []
    for q in embedding.normalised(queries[:200]):
        start = time.perf_counter()
        np.argpartition(-(unit @ q), K)[:K]
        times.append(time.perf_counter() - start)
    print(f"exact (NumPy, float32): query p50 {np.percentile(times, 50) * 1e3:.2f} ms, "
          f"p95 {np.percentile(times, 95) * 1e3:.2f} ms, {unit.nbytes / len(unit):.0f} bytes a vector")
    best = None
    for name, build in LIBRARIES.items():
        try:
            start = time.perf_counter()
            search, memory = build(vectors, args.threads)
        except ImportError:
            print(f"{name}: not installed, skipped")
            continue
        built = time.perf_counter() - start
        times, hits = [], 0
        for q, true in zip(queries, truth, strict=True):
            start = time.perf_counter()
            found = search(q)
            times.append(time.perf_counter() - start)
            hits += len(set(np.asarray(found).tolist()) & set(true.tolist()))
        recall = hits / (K * len(queries))
        p50, p95 = np.percentile(times, 50) * 1e3, np.percentile(times, 95) * 1e3
        print(f"{name}: build {built:.1f} s, query p50 {p50:.2f} ms p95 {p95:.2f} ms, recall@{K} {recall:.3f}, "
              f"{memory / len(vectors):.0f} bytes a vector")
        if best is None or (recall, -p95) > (best[1], -best[2]):
            best = (name, recall, p95, built)
    if best:
        print(f"vector_index best={best[0]} recall={best[1]:.3f} p95_ms={best[2]:.2f} build_s={best[3]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
