"""checkov over everything under ``infra/`` and the CI workflow: no failed check, every skip says why.

The Kubernetes manifests are checked as they are applied: each overlay rendered by kustomize.
checkov's Helm framework needs the chart and the helm binary (neither reachable here), so the
Airflow chart's values are checked by ``test_airflow.py`` against the chart's schema instead;
the pod template the chart's executor uses is a plain manifest and is checked here.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from tests.infra.conftest import INFRA, OVERLAYS, ROOT

SKIP_WITHOUT_REASON = {"", "No comment provided"}


@pytest.fixture(scope="session")
def report(checkov, rendered, tmp_path_factory) -> dict[str, dict]:
    """checkov's JSON report per framework, over the rendered overlays, Dockerfiles, Terraform,
    the Airflow pod template and the GitHub workflows."""
    manifests = tmp_path_factory.mktemp("rendered")
    for overlay in OVERLAYS:
        (manifests / f"{overlay}.yaml").write_text(yaml.safe_dump_all(rendered[overlay], sort_keys=False))
    for template in (INFRA / "k8s" / "airflow").glob("pod_template*.yaml"):
        (manifests / template.name).write_text(template.read_text())
    targets = {
        "kubernetes": manifests,
        "dockerfile": INFRA / "docker",
        "terraform": INFRA / "terraform",
        "github_actions": ROOT / ".github",
    }
    reports = []
    for framework, folder in targets.items():
        command = [checkov, "-d", str(folder), "--framework", framework, "--output", "json"]
        # --skip-download and BC_SKIP_MAPPING: no call to Prisma Cloud (no network here, and none needed)
        done = subprocess.run(
            [*command, "--skip-download"],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=ROOT,
            env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        )
        assert done.stdout.strip(), (
            f"checkov printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
        found = json.loads(done.stdout)
        reports += found if isinstance(found, list) else [found]
    return {r["check_type"]: r for r in reports if "check_type" in r}  # nothing found: a bare summary


def describe(check: dict) -> str:
    resource = check.get("resource", "?")
    where = f"{check.get('repo_file_path') or check.get('file_path')}:{check.get('file_line_range')}"
    return f"{check['check_id']} {check.get('check_name')} -- {resource} ({where})"


@pytest.mark.parametrize("framework", ["kubernetes", "dockerfile", "terraform", "github_actions"])
def test_checkov_passes(report, framework):
    assert framework in report, f"checkov found nothing to check for {framework}: {sorted(report)}"
    summary = report[framework]["summary"]
    failed = report[framework]["results"].get("failed_checks", [])
    assert not failed, f"{len(failed)} failed {framework} checks:\n" + "\n".join(map(describe, failed))
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0


@pytest.mark.parametrize("framework", ["kubernetes", "dockerfile", "terraform", "github_actions"])
def test_every_skip_is_written_with_its_reason(report, framework):
    skipped = report.get(framework, {}).get("results", {}).get("skipped_checks", [])
    unexplained = [
        describe(check)
        for check in skipped
        if (check.get("check_result", {}).get("suppress_comment") or "").strip() in SKIP_WITHOUT_REASON
    ]
    assert not unexplained, "skips without a reason:\n" + "\n".join(unexplained)
