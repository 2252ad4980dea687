"""Nearest-neighbour libraries for the similar-image index, compared on this machine.

Two sets of ``--vectors`` (100,000) ``int8`` embeddings of :data:`core.embedding.DIMENSIONS`
numbers (scaled as :func:`core.embedding.quantise` scales them), and ``--queries`` (1,000)
others drawn the same way:

- **random**: independent Gaussian vectors. In 256 dimensions every vector is at nearly the
  same distance from every other (cosine distance 1 ± 0.06), the worst case for a graph index:
  the true top 24 are barely nearer than the rest;
- **clustered**: like a library, pictures come in kinds: 2,000 centres, each vector its centre
  plus noise of the same size (so a vector's nearest are its kind's), queries too.

Each library builds an HNSW graph with the same settings (M 16, ef_construction 128) on all
cores, cosine distance, and answers the queries one at a time (as the API does) with ef_search
64 and 256. Truth is the exact top 24 by cosine (NumPy). Printed per library and set: build
seconds, query p50 and p95 in milliseconds, recall@24, and the index's memory per vector.
Libraries that are not installed are skipped (``pip install usearch hnswlib faiss-cpu``).
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

M, EF_CONSTRUCTION, K = 16, 128, 24
EF_SEARCH = (64, 256)
CENTRES = 2_000


def data(kind: str, n: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors, queries)`` of one set (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        draw = lambda m: rng.standard_normal((m, embedding.DIMENSIONS))  # noqa: E731
    else:
        centres = rng.standard_normal((CENTRES, embedding.DIMENSIONS))
        draw = lambda m: centres[rng.integers(0, CENTRES, m)] + rng.standard_normal((m, embedding.DIMENSIONS))  # noqa: E731
    return embedding.quantise(draw(n)), embedding.quantise(draw(queries))


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

    index = Index(
        ndim=vectors.shape[1],
        metric="cos",
        dtype="i8",
        connectivity=M,
        expansion_add=EF_CONSTRUCTION,
        expansion_search=EF_SEARCH[0],
    )
    index.add(np.arange(len(vectors)), vectors, threads=threads)

    def search(q, ef):
        index.expansion_search = ef
        return index.search(q, K).keys

    return search, index.memory_usage


def with_hnswlib(vectors, threads):
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=M, ef_construction=EF_CONSTRUCTION)
    index.add_items(vectors.astype(np.float32), np.arange(len(vectors)), num_threads=threads)
    memory = len(vectors) * (vectors.shape[1] * 4 + M * 2 * 4 + 16)  # float32 vectors and level-0 links

    def search(q, ef):
        index.set_ef(ef)
        return index.knn_query(q.astype(np.float32), K, num_threads=1)[0][0]

    return search, memory


def with_faiss(vectors, threads):
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWSQ(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    unit = embedding.normalised(vectors)
    index.train(unit)
    index.add(unit)

    def search(q, ef):
        faiss.omp_set_num_threads(1)
        index.hnsw.efSearch = ef
        return index.search(embedding.normalised(q[None]), K)[1][0]

    memory = len(faiss.serialize_index(index))
    return search, memory


LIBRARIES = {"usearch": with_usearch, "hnswlib": with_hnswlib, "faiss-cpu": with_faiss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sets", default="random,clustered")
    parser.add_argument(
        "--libraries", default=",".join(LIBRARIES), help="which to compare (default: all three)"
    )
    args = parser.parse_args(argv)
    for kind in args.sets.split(","):
        vectors, queries = data(kind, args.vectors, args.queries)
        truth = exact(vectors, queries)
        unit = embedding.normalised(vectors)
        times = []
        for q in embedding.normalised(queries[:200]):
            start = time.perf_counter()
            np.argpartition(-(unit @ q), K)[:K]
            times.append(time.perf_counter() - start)
        print(
            f"[{kind}] exact (NumPy, float32): query p50 {np.percentile(times, 50) * 1e3:.2f} ms, "
            f"p95 {np.percentile(times, 95) * 1e3:.2f} ms, {unit.nbytes / len(unit):.0f} bytes a vector"
        )
        for name in args.libraries.split(","):
            build = LIBRARIES[name]
            try:
                start = time.perf_counter()
                search, memory = build(vectors, args.threads)
            except ImportError:
                print(f"[{kind}] {name}: not installed, skipped")
                continue
            built = time.perf_counter() - start
            for ef in EF_SEARCH:
                times, hits = [], 0
                for q, true in zip(queries, truth, strict=True):
                    start = time.perf_counter()
                    found = search(q, ef)
                    times.append(time.perf_counter() - start)
                    hits += len(set(np.asarray(found).tolist()) & set(true.tolist()))
                recall = hits / (K * len(queries))
                p50, p95 = np.percentile(times, 50) * 1e3, np.percentile(times, 95) * 1e3
                print(
                    f"[{kind}] {name}: build {built:.1f} s, ef_search {ef}: query p50 {p50:.2f} ms p95 {p95:.2f} ms, "
                    f"recall@{K} {recall:.3f}, {memory / len(vectors):.0f} bytes a vector",
                    flush=True,
                )
            del search
    return 0


if __name__ == "__main__":
    sys.exit(main())
