"""What the catalog's web pages cost, against the bare search they are built on (``make bench``).

On SQLite in a temporary ``IMGTAG_HOME``:

1. A catalog of 20,000 assets (fake originals: rows only) with about 6 machine tags each from a
   vocabulary of 300 (a few common, most rare), random scores, two model versions, some
   accepted, rejected and human-added tags, uploads spread over 12 months.
2. **Gallery**: the full ``/`` and ``/search/`` view through Django's test client, signed in as
   a content manager, for a few typical URLs (median of 5 requests each, after one warm-up),
   against the bare paged search: ``services.search(...)`` (``facets.filter_assets`` for a
   facet filter) with its tags, counted and sliced to one page of 24, as the API's list view
   does. Their difference is the facet counts plus the rendering. The SQL queries of one
   gallery request are counted at the page size of 24 and of 48: a count that grows with the
   page size would be an N+1.
3. **Thumbnails** of 30 12-megapixel JPEGs: ``catalog.thumbnails.get_thumbnail`` with an empty
   cache (reduced JPEG decode, area resize, encode, atomic write), against a full
   ``cv2.imdecode`` + ``cv2.resize`` + ``cv2.imencode`` per image; then the cached path (the
   file is there: read it). The same as ``GET /assets/<id>/thumbnail`` requests: the first
   (cache empty) and the second (served from disk).

Ratio lines: ``ratio gallery/search=<x>`` (geometric mean over the URLs of gallery time over
bare-search time) and ``ratio thumb/full_decode=<x> cached/cold=<x>`` (thumbnails/s with an
empty cache over the full-decode baseline; second request over first request, per second).
No asserts: machines are noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.bench_tagging import make_jpegs  # noqa: E402

COMMON = [
    "cat",
    "dog",
    "grass",
    "sky",
    "person",
    "tree",
    "car",
    "building",
    "water",
    "tabby cat",
    "coffee mug",
    "beach",
    "mountain",
    "bird",
    "flower",
    "road",
    "snow",
    "boat",
    "chair",
    "table",
]
MODEL = "bench-tagger"
PAGE = 24


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sqlite3

    import django

    return (
        f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"Django {django.__version__}, SQLite {sqlite3.sqlite_version}, OpenCV {cv2.__version__}"
    )


def setup_catalog(home: Path) -> None:
    os.environ["IMGTAG_HOME"] = str(home)
    os.environ["IMGTAG_CACHE_DIR"] = str(home / "cache")
    os.environ["IMGTAG_ALLOWED_HOSTS"] = "testserver"  # Django's test client
    for name in ("DATABASE_URL", "IMGTAG_STORAGE_URL"):
        os.environ.pop(name, None)
    from catalog import runtime

    runtime.setup(migrate=True)


def build_catalog(assets: int, vocabulary: int, per_asset: int, seed: int = 0) -> dict:
    """Fake asset rows with tag rows, in bulk; returns what the queries need (tag names, months)."""
    from django.db import transaction
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from catalog.models import Asset, AssetTag, ModelVersion, Tag

    rng = np.random.default_rng(seed)
    names = COMMON + [f"tag {i:03d}" for i in range(len(COMMON), vocabulary)]
    tags = Tag.objects.bulk_create([Tag(name=n) for n in names])
    tag_ids = np.array([t.pk for t in tags])
    versions = [ModelVersion.objects.create(name=MODEL, version=v) for v in ("1", "2")]
    weights = np.log(1.0 / (np.arange(vocabulary) + 5.0))  # Zipf-like: "cat" on ~1 asset in 4
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    first = dt.datetime(now.year - (now.month <= 11), (now.month - 12) % 12 + 1, 1, tzinfo=dt.UTC)
    span = (now - first).total_seconds() / 86400  # from the 1st of the month 11 months ago
    ages = np.sort(rng.uniform(0, span, assets))[::-1]  # ids grow with the date, as uploads do
    created = [now - dt.timedelta(days=float(a)) for a in ages]
    field = Asset._meta.get_field("created_at")
    batch = 2000
    rows = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("building the catalog", total=assets)
        field.auto_now_add = False  # keep the spread-out upload dates
        try:
            for start in range(0, assets, batch):
                n = min(batch, assets - start)
                with transaction.atomic():
                    made = Asset.objects.bulk_create(
                        [
                            Asset(
                                sha256=hashlib.sha256(f"bench-{i}".encode()).hexdigest(),
                                uri=f"file:///nonexistent/{i:064x}",
                                filename=f"photo_{i:05d}.jpg",
                                size=int(rng.integers(200_000, 6_000_000)),
                                width=4000,
                                height=3000,
                                format="JPEG",
                                status=Asset.Status.TAGGED,
                                created_at=created[i],
                            )
                            for i in range(start, start + n)
                        ]
                    )
                    # ``per_asset`` distinct tags per asset, drawn by weight (Gumbel top-k)
                    keys = weights + rng.gumbel(size=(n, vocabulary))
                    picked = np.argpartition(-keys, per_asset, axis=1)[:, :per_asset]
                    scores = rng.beta(2, 3, size=picked.shape)
                    review = rng.random(picked.shape)
                    newer = (ages[start : start + n] < 180) | (rng.random(n) < 0.2)
                    tag_rows = []
                    for j, asset in enumerate(made):
                        version = versions[1] if newer[j] else versions[0]
                        for k in range(per_asset):
                            state = (
                                AssetTag.Review.REJECTED
                                if review[j, k] < 0.02
                                else AssetTag.Review.ACCEPTED
                                if review[j, k] < 0.06
                                else AssetTag.Review.SUGGESTED
                            )
                            tag_rows.append(
                                AssetTag(
                                    asset_id=asset.pk,
                                    tag_id=int(tag_ids[picked[j, k]]),
                                    score=round(float(scores[j, k]), 4),
                                    source=AssetTag.Source.MODEL,
                                    model_version=version,
                                    review=state,
                                )
                            )
                        if rng.random() < 0.05:  # a person added a tag the model did not give
                            extra = int(rng.integers(0, vocabulary))
                            if extra not in picked[j]:
                                tag_rows.append(
                                    AssetTag(
                                        asset_id=asset.pk,
                                        tag_id=int(tag_ids[extra]),
                                        score=1.0,
                                        source=AssetTag.Source.HUMAN,
                                        review=AssetTag.Review.ACCEPTED,
                                    )
                                )
                    AssetTag.objects.bulk_create(tag_rows, batch_size=1000)
                    rows += len(tag_rows)
                progress.advance(task, n)
        finally:
            field.auto_now_add = True
    months = sorted({c.strftime("%Y-%m") for c in created})
    return {"rows": rows, "months": months, "version": f"{MODEL}:2"}


def median_ms(fn, runs: int) -> float:
    fn()  # warm up: templates, query compilation, SQLite page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench_gallery(urls: list[str], runs: int) -> float:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.http import QueryDict
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from catalog import facets, roles, services
    from catalog.web import views

    user = get_user_model().objects.create_user(username="bench-manager")
    roles.assign_role(user, roles.CONTENT_MANAGER)
    client = Client()
    client.force_login(user)

    def gallery(url):
        def run():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            return response

        return run

    def bare(url):
        filters, problems = facets.parse(QueryDict(url.partition("?")[2]))
        assert not problems, problems
        if filters.active():  # facet filters: the queryset the gallery pages
            queryset = services.with_tags(facets.filter_assets(filters))
        else:
            queryset = services.search(filters.q, min_score=filters.min_score)

        def run():
            count = queryset.all().count()
            page = list(queryset.all()[:PAGE])
            for asset in page:
                list(asset.asset_tags.all())
            return count

        return run, filters

    def facet_only(filters):
        return lambda: facets.facet_counts(facets.filter_assets(filters), filters)

    ratios = []
    print(
        f"{'URL':<46} {'assets':>7} {'gallery':>10} {'search':>9} {'facets':>9} {'ratio':>6} {'queries':>8}"
    )
    for url in urls:
        search_fn, filters = bare(url)
        count = search_fn()
        g = median_ms(gallery(url), runs)
        s = median_ms(search_fn, runs)
        f = median_ms(facet_only(filters), runs)
        with CaptureQueriesContext(connection) as queries:
            gallery(url)()
        ratios.append(g / s)
        print(
            f"{url:<46} {count:>7} {g:>7.1f} ms {s:>6.1f} ms {f:>6.1f} ms {g / s:>6.1f} {len(queries):>8}",
            flush=True,
        )
    counts = {}
    for size in (PAGE, 2 * PAGE):
        views.PAGE_SIZE = size
        with CaptureQueriesContext(connection) as queries:
            gallery(urls[0])()
        counts[size] = len(queries)
    views.PAGE_SIZE = PAGE
    print(
        f"SQL queries per gallery request ({urls[0]}): {counts[PAGE]} at {PAGE} a page, "
        f"{counts[2 * PAGE]} at {2 * PAGE} a page"
        + (" (grows with the page: N+1)" if counts[2 * PAGE] > counts[PAGE] else " (no N+1)")
    )
    return math.exp(statistics.fmean(math.log(r) for r in ratios))


def bench_thumbnails(folder: Path, count: int) -> tuple[float, float]:
    from django.conf import settings
    from django.test import Client

    from catalog import services, thumbnails
    from catalog.storage import get_storage

    print(f"generating {count} 4000x3000 JPEGs ...", flush=True)
    files = make_jpegs(folder, count, (4000, 3000), seed=2)
    mb = sum(p.stat().st_size for p in files) / len(files) / 1e6
    assets = [a for a, _ in services.register([services.prepare(p.read_bytes(), p.name) for p in files])]
    storage = get_storage()
    cache = Path(settings.IMGTAG.cache_dir) / "thumbnails"

    def rate(fn, rounds: int, before=None) -> float:
        seconds = []
        for _ in range(rounds):
            if before:
                before()
            start = time.perf_counter()
            for asset in assets:
                fn(asset)
            seconds.append(time.perf_counter() - start)
        return len(assets) / statistics.median(seconds)

    def full_decode(asset):
        bgr = cv2.imdecode(np.frombuffer(storage.read(asset.uri), np.uint8), cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        scale = thumbnails.SIZE / max(h, w)
        small = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        _, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, thumbnails.QUALITY])
        return jpeg.tobytes()

    def thumbnail(asset):
        return thumbnails.get_thumbnail(asset).read_bytes()

    full = rate(full_decode, 2)

    def empty():
        shutil.rmtree(cache, ignore_errors=True)

    cold = rate(thumbnail, 3, before=empty)
    cached = rate(thumbnail, 5)

    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-manager"))

    def request(asset):
        response = client.get(f"/assets/{asset.pk}/thumbnail")
        assert response.status_code == 200, response.status_code
        return b"".join(response.streaming_content)

    first_request = rate(request, 2, before=empty)
    served = rate(request, 5)
    side = cv2.imdecode(np.frombuffer(thumbnail(assets[0]), np.uint8), cv2.IMREAD_COLOR).shape
    print(f"{count} JPEGs of 4000x3000 ({mb:.1f} MB) to a {side[1]}x{side[0]} thumbnail:")
    print(f"  full decode + resize + encode (baseline): {full:.1f} images/s")
    print(f"  catalog.thumbnails, cold (cache empty):   {cold:.1f} images/s")
    print(f"  catalog.thumbnails, cached (from disk):   {cached:.1f} images/s")
    print(f"  GET /assets/<id>/thumbnail, cold:         {first_request:.1f} requests/s")
    print(f"  GET /assets/<id>/thumbnail, cached:       {served:.1f} requests/s")
    return cold / full, served / first_request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--vocabulary", type=int, default=300)
    parser.add_argument("--tags-per-asset", type=int, default=6)
    parser.add_argument("--runs", type=int, default=5, help="gallery requests per URL (median)")
    parser.add_argument("--thumbnails", type=int, default=30, help="12 MP JPEGs for the thumbnails")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="imgtag-bench-") as tmp:
        tmp = Path(tmp)
        setup_catalog(tmp / "home")
        print(machine())
        start = time.perf_counter()
        built = build_catalog(args.assets, args.vocabulary, args.tags_per_asset)
        print(
            f"catalog: {args.assets} assets, {built['rows']} tag rows, {args.vocabulary} tags, "
            f"{len(built['months'])} months, built in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        urls = [
            "/",
            "/search/?q=cat",
            "/search/?q=cat+AND+NOT+dog&min_score=0.5",
            f"/search/?tag=dog&model={built['version']}",
        ]
        gallery_ratio = bench_gallery(urls, args.runs)
        print(f"ratio gallery/search={gallery_ratio:.2f}", flush=True)
        thumb_ratio, cached_ratio = bench_thumbnails(tmp / "big", args.thumbnails)
        print(f"ratio thumb/full_decode={thumb_ratio:.2f} cached/cold={cached_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
