"""Ingest reads only under its allowed roots: ``IMGTAG_INGEST_ROOTS`` where set (the platform, the
pods), else the folders and manifests' folders given. Manifest rows naming ``/etc/passwd`` or
``../`` paths and symlinks pointing out of a tree are refused, not copied, and named by
``validate``; a training run's form (folders, never roots) cannot widen them.

The command line runs as a subprocess, with the arguments the training DAG renders.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from pipelines.platform import Platform, Ports
from tests.pipelines.training.test_ingest import draw
from tests.shapes import make_tree

IMGTAG = [sys.executable, "-m", "pipelines.cli"]


def run(*args: str, codes=(0,), **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "IMGTAG_INGEST_ROOTS"}
    done = subprocess.run(
        [*IMGTAG, *args], capture_output=True, text=True, timeout=600, env={**environment, **env}
    )
    assert done.returncode in codes, (
        f"imgtag {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done


def dataset_bytes(dataset: Path) -> set[str]:
    return {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (dataset / "images").rglob("*") if p.is_file()
    }


@pytest.fixture
def layout(tmp_path):
    """``labelled/`` (a tree and a manifest folder) and, beside it, ``outside/secret.png``."""
    secret = draw(tmp_path / "outside" / "secret.png", colour=(1, 200, 3))
    tree = make_tree(tmp_path / "labelled" / "shapes", 12, seed=2, size=40)
    (tree / "circle" / "shadow.jpg").symlink_to("/etc/shadow")
    (tree / "circle" / "secret.png").symlink_to(secret)
    extra = tmp_path / "labelled" / "extra"
    draw(extra / "ok.png", "square")
    (extra / "escape.png").symlink_to(secret)
    (extra / "manifest.csv").write_text(
        "path,tags\nok.png,square\n/etc/passwd,circle\n../../outside/secret.png,circle\nescape.png,circle\n"
    )
    return tmp_path, tree, extra / "manifest.csv", secret


def test_paths_outside_the_folders_given_are_refused_named_and_never_copied(layout):
    root, tree, manifest, secret = layout
    out = root / "run" / "dataset"
    done = run("ingest", "--folder", str(tree), "--manifest", str(manifest), "--out", str(out), "--json")
    summary = json.loads(done.stdout)
    refused = {(r["path"], r["resolved"]) for r in summary["refused"]}
    assert refused == {
        (str(tree / "circle" / "shadow.jpg"), "/etc/shadow"),
        (str(tree / "circle" / "secret.png"), str(secret)),
        ("/etc/passwd", "/etc/passwd"),
        ("../../outside/secret.png", str(secret)),
        ("escape.png", str(secret)),
    }
    assert "not read:" in done.stderr and "outside the allowed roots" in done.stderr
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in dataset_bytes(out)
    assert summary["images"] == len(dataset_bytes(out)) > 0  # the rest was ingested
    origins = {
        o for line in (out / "manifest.jsonl").read_text().splitlines() for o in json.loads(line)["origins"]
    }
    assert not {o for o in origins if "secret" in o or o.startswith("/etc")}

    report_dir = root / "run" / "validation"
    checked = run(
        "validate", str(out), "--report", str(report_dir), "--min-examples", "1", "--json", codes=(1,)
    )
    assert json.loads(checked.stdout)["failed_rules"] == ["allowed_paths"]
    report = (report_dir / "report.md").read_text()
    assert "allowed_paths" in report and "/etc/passwd" in report and "/etc/shadow" in report
    assert "IMGTAG_INGEST_ROOTS" in report
    assert len(json.loads((report_dir / "report.json").read_text())["failures"][0]["offending"]) == 5


def test_with_ingest_roots_set_the_folders_a_run_names_do_not_widen_them(layout):
    """As the training DAG runs it (``--folder`` with the form's folders joined by commas, in an
    environment with IMGTAG_INGEST_ROOTS): a folder outside the roots is not even listed."""
    root, tree, manifest, secret = layout
    elsewhere = make_tree(root / "elsewhere" / "shapes", 6, seed=9, size=40)
    roots = {"IMGTAG_INGEST_ROOTS": str(root / "labelled")}
    out = root / "runs" / "manual__1" / "dataset"
    done = run(
        "ingest",
        "--folder",
        f"{tree},{elsewhere}",
        "--manifest",
        str(manifest),
        "--no-catalog",
        "--out",
        str(out),
        "--json",
        **roots,
    )
    summary = json.loads(done.stdout)
    assert {r["source"] for r in summary["refused"]} >= {f"--folder {elsewhere}"}
    assert not dataset_bytes(out) & dataset_bytes_of(elsewhere)

    only_outside = run(
        "ingest",
        "--folder",
        str(elsewhere),
        "--manifest",
        str(root / "outside" / "m.csv"),
        "--out",
        str(root / "other"),
        codes=(2,),
        **roots,
    )
    assert "every source lies outside the allowed roots" in only_outside.stderr
    assert "IMGTAG_INGEST_ROOTS" in only_outside.stderr and not (root / "other").exists()


def dataset_bytes_of(folder: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_the_platform_lets_ingest_read_its_labelled_folder_only(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGTAG_INGEST_ROOTS", raising=False)
    env = Platform(
        Settings.from_env({"IMGTAG_HOME": str(tmp_path)}), ports=Ports(airflow=18124)
    ).environment()
    assert env["IMGTAG_INGEST_ROOTS"] == str(tmp_path / "labelled")  # where `make labelled-sample` draws
    assert Settings.from_env(env).ingest_roots == ((tmp_path / "labelled").resolve(),)
