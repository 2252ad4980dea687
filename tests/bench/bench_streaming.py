"""Streaming against in-process tagging, in one run, on the real RabbitMQ (``make bench``).

1. 10,000 messages (100 images, 100 messages each) are drained by one ``imgtag drain``, whose
   peak resident memory is read from the kernel when it exits.
   The model cache (``IMGTAG_CACHE_DIR``) is filled first by one ``imgtag tag``, whose cold
   start is reported too, as a deployed worker finds it filled.
2. The same 640x480 JPEGs go (a) through ``imgtag import`` (tagged in process) and (b)
   through ``imgtag import --queue`` then ``imgtag drain`` over RabbitMQ, each into a fresh
   catalog. Each figure is images over the wall time of the command that tags them, model
   start-up included: ``imgtag import`` for (a), ``imgtag drain`` for (b). Storing and
   publishing (``import --queue``) is the producers' work, done as uploads arrive; its time
   and the combined figure are printed too.

Last line: ``ratio drain/inprocess=<b/a> worker_rss_mb=<peak>``.
Targets: ratio >= 0.8, peak RSS < 1500 MB. No asserts: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.bench_tagging import make_jpegs  # noqa: E402

IMGTAG = [sys.executable, "-m", "pipelines.cli"]


def run(env: dict, *args) -> tuple[float, str, float]:
    """Run one imgtag command: its wall time, its stdout and its own peak RSS in MB."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen([*IMGTAG, *args], env=env, stdout=out, stderr=errors, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # the kernel's account of this child alone
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        errors.seek(0)
        stdout, stderr = out.read(), errors.read()
    if process.returncode != 0:
        raise SystemExit(f"imgtag {' '.join(args)} failed:\n{stderr[-2000:]}")
    return time.perf_counter() - start, stdout, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args(argv)
    queue = f"bench.{uuid.uuid4().hex[:8]}"
    base = {**os.environ, "IMGTAG_QUEUE": queue, "TF_CPP_MIN_LOG_LEVEL": "3"}
    base.pop("DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="imgtag-bench-") as tmp:
        tmp = Path(tmp)
        # One model cache for every command, filled first, as a deployed worker finds it.
        base["IMGTAG_CACHE_DIR"] = str(tmp / "cache")
        warm = make_jpegs(tmp / "warm", 1, (640, 480), seed=9)
        seconds, _, first_start_mb = run({**base, "IMGTAG_HOME": str(tmp / "w")}, "tag", str(warm[0]))
        print(
            f"first start (converts the model into the cache): {seconds:.1f} s, peak RSS {first_start_mb:.0f} MB"
        )
        print(f"generating {args.images} 640x480 JPEGs ...", flush=True)
        photos = make_jpegs(tmp / "photos", args.images, (640, 480))[0].parent
        try:
            few = make_jpegs(tmp / "few", 100, (640, 480), seed=3)[0].parent
            many_env = {**base, "IMGTAG_HOME": str(tmp / "c")}
            run(many_env, "import", "--queue", str(few))
            connection = pika.BlockingConnection(
                pika.URLParameters(os.environ.get("IMGTAG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
            )
            channel = connection.channel()
            channel.queue_purge(queue)
            rows = json.loads(run(many_env, "search", "", "--json", "--limit", "1000")[1])["results"]
            for i in range(args.messages):
                asset = rows[i % len(rows)]
                body = {
                    "schema": 1,
                    "asset_id": asset["id"],
                    "sha256": asset["sha256"],
                    "uri": "",
                    "reason": "retag",
                    "requested_at": "",
                }
                channel.basic_publish(
                    "", queue, json.dumps(body).encode(), pika.BasicProperties(delivery_mode=2)
                )
            connection.close()
            seconds, out, rss_mb = run(many_env, "drain", "--json")
            summary = json.loads(out)
            print(
                f"drained {summary['received']} messages in {seconds:.1f} s "
                f"({summary['received'] / seconds:.1f}/s), tagged {summary['tagged']}, peak RSS {rss_mb:.0f} MB",
                flush=True,
            )
            inprocess, _, _ = run({**base, "IMGTAG_HOME": str(tmp / "a")}, "import", str(photos))
            print(f"(a) imgtag import (in process): {args.images / inprocess:.1f} images/s", flush=True)
            queue_env = {**base, "IMGTAG_HOME": str(tmp / "b")}
            publish, _, _ = run(queue_env, "import", "--queue", str(photos))
            drain, out, _ = run(queue_env, "drain", "--json")
            assert json.loads(out)["tagged"] == args.images, out
            streamed = args.images / drain
            print(
                f"(b) imgtag drain: {streamed:.1f} images/s (after imgtag import --queue stored and published "
                f"them in {publish:.1f} s; both together {args.images / (publish + drain):.1f} images/s)"
            )

        finally:
            connection = pika.BlockingConnection(
                pika.URLParameters(os.environ.get("IMGTAG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
            )
            channel = connection.channel()
            for name in (queue, f"{queue}.dead", f"{queue}.suspect"):
                channel.queue_delete(name)
            channel.exchange_delete(f"{queue}.dead")
            connection.close()
        print(f"ratio drain/inprocess={streamed / (args.images / inprocess):.2f} worker_rss_mb={rss_mb:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
