"""The ``validate`` stage: Great Expectations checks a dataset before anything trains on it.

The manifest becomes a few small pandas tables, and a Great Expectations 1.x suite runs once
per table, never once per image (1,000 images take about 0.3 s of GX, 20,000 about 0.8 s):

==========  ===============================================  ================================
table       one row per                                      rules checked on it
==========  ===============================================  ================================
images      manifest line                                    schema, image_size, files_exist,
                                                             decodes
image_tags  (image, tag) pair                                tag_names, allowed_tags
tag_counts  tag (images it labels, whole dataset)            min_examples_per_tag
sha256s     distinct sha256 (how many splits it is in)       split_leakage
groups      distinct group (how many splits it is in)        split_leakage
paths       distinct image path (how many sha256 own it)     split_leakage
refused     file ingest did not read (``dataset.json``)      allowed_paths
==========  ===============================================  ================================

Before GX runs, every image file is read and decoded with :func:`core.imageio.decode`
in a thread pool (OpenCV releases the GIL); whether the file exists and the decode error, if
any, become columns of the ``images`` table, so GX reports them like any other rule.

The report names the rules and the files: ``report.md`` (readable), ``report.json``
(machine readable) and ``gx_result.json`` (GX's own validation results) are written into
the report folder, pass or fail. The manifest is read line by line as JSON, not through
:func:`pipelines.training.dataset.load`, so a row that lacks a field is reported rather than refused.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core import atomic, cgroup, training_limits
from core.imageio import ImageError, decode
from pipelines.training import dataset as ds
from pipelines.training.layout import REPORT_MD, RunLayout

#: The columns every manifest row has: the fields of :class:`pipelines.training.dataset.Example` (``group``
#: is optional: datasets written before it existed have none).
MANIFEST_COLUMNS = tuple(f.name for f in fields(ds.Example) if f.name != "group")
SHA256_PATTERN = r"^[0-9a-f]{64}$"
#: Lowercase, no leading, trailing or repeated spaces, 1 to 200 characters.
TAG_PATTERN = r"^(?=.{1,200}$)[^\sA-Z]+(?: [^\sA-Z]+)*$"
#: Relative POSIX path inside the dataset folder: no leading ``/``, no ``..``, no backslash.
PATH_PATTERN = r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))[^\\]+$"
REPORT_JSON = "report.json"
GX_RESULT_JSON = "gx_result.json"
#: Offending values listed per failure in ``report.md`` (``report.json`` has them all).
MD_LIST_LIMIT = 50

#: Rule name -> what it checks, in report order.
RULES = {
    "schema": "manifest columns exist; sha256 is 64 lowercase hex digits and unique; split is one of "
    + "/".join(ds.SPLITS)
    + "; path is set and relative inside the dataset; tags is a list (empty: a negative, an image no tag is right on)",
    "tag_names": "tag names are lowercase, trimmed, single-spaced, 1 to 200 characters",
    "allowed_tags": "every tag is in the allowed list",
    "min_examples_per_tag": "every tag labels at least the minimum number of images (whole dataset)",
    "split_leakage": "each image (sha256), and each group of images, is in exactly one split; "
    "no image file is shared by two sha256 rows",
    "image_size": "width and height at least the minimum side; width x height at most the pixel limit",
    "files_exist": "every image file listed in the manifest is in the dataset folder",
    "decodes": "every image file decodes (core.imageio.decode, OpenCV)",
    "allowed_paths": "every file the sources named lies under an allowed root (IMGTAG_INGEST_ROOTS, or "
    "the folders and manifests given); files elsewhere were refused at ingest and not copied",
}


@dataclass
class Failure:
    """One failed expectation: its rule, its GX type and what did not meet it.

    Attributes:
        rule: the rule it belongs to (a key of :data:`RULES`).
        expectation: the GX expectation type, ``expect_column_values_to_be_between`` ...
        table: the table it ran on (``images``, ``image_tags``, ``tag_counts``, ``sha256s``, ``paths``).
        column: the column it checked, when it checks one.
        description: what the expectation asks, in words.
        unexpected_count: how many rows failed it (0 for table-level expectations).
        offending: the failing values: for images ``{"files", "path", "sha256", "value", ...}``,
            for tags ``{"tag", "count", ...}``.
        error: the exception GX raised when the expectation could not be evaluated.
    """

    rule: str
    expectation: str
    table: str
    column: str | None
    description: str
    unexpected_count: int
    offending: list[dict] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RuleResult:
    """A rule's outcome: passed, failed, or skipped (``allowed_tags`` without a list)."""

    name: str
    description: str
    status: str
    expectations: int = 0
    failed: int = 0

    @property
    def success(self) -> bool:
        return self.status != "failed"


@dataclass
class ValidationReport:
    """What :func:`validate` found, and where it wrote its reports.

    Attributes:
        passed: every rule passed.
        failures: the failed expectations, in rule order.
        rules: every rule with its status.
        report_dir: the folder holding ``report.md``, ``report.json`` and ``gx_result.json``.
        dataset_dir: the validated dataset folder.
        images_checked: manifest rows checked (each image file read and decoded once).
        tag_counts: images per tag over the whole dataset.
        images_per_split: manifest rows per split.
        params: the thresholds the rules used.
        negatives: images without a tag (kept: no tag is right on them).
        dropped_tags: tags under the minimum that ``drop_rare_tags`` took off the dataset, with
            the images each labelled.
        seconds: time spent decoding images, importing Great Expectations, validating with it,
            and in total.
    """

    passed: bool
    failures: list[Failure]
    rules: list[RuleResult]
    report_dir: Path
    dataset_dir: Path
    images_checked: int
    tag_counts: dict[str, int]
    images_per_split: dict[str, int]
    params: dict
    seconds: dict[str, float]
    negatives: int = 0
    dropped_tags: dict[str, int] = field(default_factory=dict)

    @property
    def rare_tags(self) -> dict[str, int]:
        """Tags with fewer images than the minimum (the ones ``drop_rare_tags`` would drop)."""
        least = self.params["min_examples_per_tag"]
        return {t: n for t, n in self.tag_counts.items() if n < least}

    @property
    def failed_rules(self) -> list[str]:
        return [r.name for r in self.rules if r.status == "failed"]

    @property
    def report_md(self) -> Path:
        return self.report_dir / REPORT_MD

    @property
    def report_json(self) -> Path:
        return self.report_dir / REPORT_JSON

    def to_dict(self) -> dict:
        """The stage summary the CLI prints and hands to Airflow."""
        return {
            "passed": self.passed,
            "dataset": str(self.dataset_dir),
            "report": str(self.report_md),
            "report_json": str(self.report_json),
            "failed_rules": self.failed_rules,
            "images_checked": self.images_checked,
            "tags": dict(self.tag_counts),
            "negatives": self.negatives,
            "dropped_tags": dict(self.dropped_tags),
            "rare_tags": sorted(self.rare_tags),
        }

    def to_json_dict(self) -> dict:
        """Everything ``report.json`` holds."""
        return {
            "passed": self.passed,
            "dataset": str(self.dataset_dir),
            "params": self.params,
            "counts": {
                "images": self.images_checked,
                "images_per_split": self.images_per_split,
                "tags": len(self.tag_counts),
                "negatives": self.negatives,
                "failed_expectations": len(self.failures),
            },
            "dropped_tags": self.dropped_tags,
            "rules": [
                {
                    **asdict(r),
                    "success": r.success,
                    "details": [f.to_dict() for f in self.failures if f.rule == r.name],
                }
                for r in self.rules
            ],
            "failed_rules": self.failed_rules,
            "failures": [f.to_dict() for f in self.failures],
            "tag_counts": self.tag_counts,
            "gx_result": str(self.report_dir / GX_RESULT_JSON),
            "seconds": self.seconds,
        }

    def text(self) -> str:
        """The readable report (Markdown): a table of rules, then each failure with its files."""
        return _markdown(self)


# --- reading the manifest ---


@dataclass
class _Row:
    """A manifest line as the report needs it, whatever the line holds."""

    line: int
    raw: dict
    sha256: Any
    path: Any
    split: Any
    tags: list
    files: list[str]
    width: int
    height: int
    group: Any = None


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _read_manifest(dataset_dir: Path) -> list[_Row]:
    manifest = dataset_dir / ds.MANIFEST_FILE
    if not manifest.is_file():
        raise ds.DatasetError(f"{manifest}: no manifest; run `imgtag ingest ... --out {dataset_dir}` first")
    rows = []
    for number, raw in ds.jsonl_objects(manifest):
        tags = raw.get("tags")
        tags = [t if isinstance(t, str) else str(t) for t in tags] if isinstance(tags, list) else []
        origins = raw.get("origins")
        origins = [str(o) for o in origins] if isinstance(origins, list) else []
        path = raw.get("path")
        rows.append(
            _Row(
                line=number,
                raw=raw,
                sha256=raw.get("sha256"),
                path=path,
                split=raw.get("split"),
                tags=tags,
                files=origins or ([str(path)] if path else [f"{ds.MANIFEST_FILE}:{number}"]),
                width=_as_int(raw.get("width")),
                height=_as_int(raw.get("height")),
                group=raw.get("group") or None,
            )
        )
    return rows


def default_report_dir(dataset_dir: str | Path) -> Path:
    """``<dataset>/../validation``: beside the dataset folder, so DVC never versions the report."""
    return RunLayout.of(dataset_dir).validation


def read_allowed_tags(path: str | Path) -> list[str]:
    """An allowed-tags file: one tag per line; blank lines and ``#`` comments are skipped.

    Tags are normalized as the dataset stores them (lowercase, single spaces).
    """
    tags = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            tags.append(ds.normalize_tag(line))
    return sorted(set(tags))


# --- reading and decoding every image ---


def _image_file(dataset_dir: Path, path: Any) -> Path | None:
    """The file a manifest path names, or None when it is not a relative path inside the folder."""
    if not isinstance(path, str) or not path or "\\" in path or path.startswith("/"):
        return None
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        return None
    return dataset_dir / normal


def _check_file(file: Path | None, name: str, max_pixels: int) -> tuple[bool, str | None]:
    """``(exists, decode error or None)`` for one image file (runs in a worker thread)."""

    if file is None or not file.is_file():
        return False, None
    try:
        decode(file.read_bytes(), name, max_pixels=max_pixels)
    except ImageError as exc:
        return True, exc.problem
    except OSError as exc:
        return True, f"cannot be read: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever a decoder raises, the file fails the rule
        return True, f"{type(exc).__name__}: {exc}"
    return True, None


def _check_files(
    dataset_dir: Path, rows: list[_Row], max_pixels: int, workers: int | None, progress: bool
) -> list[tuple[bool, str | None]]:
    jobs = [(_image_file(dataset_dir, r.path), r.files[0], max_pixels) for r in rows]
    workers = workers or min(16, cgroup.available_cpus())
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="validate-decode") as pool:
        results = pool.map(lambda job: _check_file(*job), jobs)
        if not progress:
            return list(results)
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("Decoding images", total=len(jobs))
            checked = []
            for result in results:
                checked.append(result)
                bar.advance(task)
            return checked


# --- the tables and the suites ---


@dataclass
class _Table:
    """A DataFrame for GX and, per row position, what the report says about that row."""

    name: str
    frame: Any
    expectations: list
    #: (failing row positions, expectation type, column) -> offending dicts
    describe: Any


def _rule(name: str, expectation, description: str):
    """Tag a GX expectation with its rule (in ``meta``) and say what it asks (``description``)."""
    expectation.meta = {"rule": name}
    expectation.description = description
    return expectation


def _images_table(
    rows: list[_Row], checks: list[tuple[bool, str | None]], min_side: int, max_pixels: int
) -> _Table:
    """The manifest as written, one row per line, plus derived columns for the size and file rules."""
    images = _images_frame(rows, checks)
    expectations = [*_image_rules(min_side, max_pixels), *_manifest_value_rules(images.columns)]

    def describe(positions: list[int], kind: str, column: str | None) -> list[dict]:
        out = []
        for position in positions:
            r = rows[position]
            value = _plain(images[column].iloc[position]) if column else None
            problem = _image_problem(kind, column, value, r, min_side, max_pixels)
            out.append(
                {
                    "files": r.files,
                    "path": r.path,
                    "sha256": r.sha256,
                    "line": r.line,
                    "value": value,
                    "problem": problem,
                }
            )
        return out

    return _Table("images", images, expectations, describe)


def _images_frame(rows: list[_Row], checks: list[tuple[bool, str | None]]):
    """The manifest as a pandas frame, plus the derived columns the size and file rules read."""
    import pandas as pd

    # An empty manifest has no columns to miss: only its row count fails.
    columns = None if rows else MANIFEST_COLUMNS
    images = pd.DataFrame([r.raw for r in rows], index=range(len(rows)), columns=columns)
    images["tags_is_list"] = [isinstance(r.raw.get("tags"), list) for r in rows]
    images["short_side"] = [min(r.width, r.height) for r in rows]
    images["pixels"] = [r.width * r.height for r in rows]
    images["file_exists"] = [exists for exists, _ in checks]
    images["decode_error"] = pd.Series([error for _, error in checks], index=images.index, dtype=object)
    return images


def _image_rules(min_side: int, max_pixels: int) -> list:
    """The rules every manifest meets: its columns, tags as lists, image sizes, files that decode."""
    import great_expectations as gx

    E = gx.expectations
    return [
        _rule(
            "schema", E.ExpectTableRowCountToBeBetween(min_value=1), "the manifest lists at least one image"
        ),
        *(
            _rule("schema", E.ExpectColumnToExist(column=c), f"the manifest has the column {c!r}")
            for c in MANIFEST_COLUMNS
        ),
        _rule(
            "schema", E.ExpectColumnValuesToBeInSet(column="tags_is_list", value_set=[True]), "tags is a list"
        ),
        _rule(
            "image_size",
            E.ExpectColumnValuesToBeBetween(column="short_side", min_value=min_side),
            f"width and height are at least {min_side} px",
        ),
        _rule(
            "image_size",
            E.ExpectColumnValuesToBeBetween(column="pixels", max_value=max_pixels),
            f"width x height is at most {max_pixels:,} pixels",
        ),
        _rule(
            "files_exist",
            E.ExpectColumnValuesToBeInSet(column="file_exists", value_set=[True]),
            "the image file is in the dataset folder",
        ),
        _rule("decodes", E.ExpectColumnValuesToBeNull(column="decode_error"), "the image file decodes"),
    ]


def _manifest_value_rules(columns) -> list:
    """The rules on the values of the manifest's ``sha256``, ``split`` and ``path`` columns.

    Only for the columns that exist: ExpectColumnToExist reports a missing one, and these would
    only repeat it as exceptions.
    """
    import great_expectations as gx

    E = gx.expectations
    expectations = []
    if "sha256" in columns:
        expectations += [
            _rule("schema", E.ExpectColumnValuesToNotBeNull(column="sha256"), "sha256 is set"),
            _rule(
                "schema",
                E.ExpectColumnValuesToMatchRegex(column="sha256", regex=SHA256_PATTERN),
                "sha256 is 64 lowercase hex digits",
            ),
            _rule(
                "schema",
                E.ExpectColumnValuesToBeUnique(column="sha256"),
                "sha256 is unique (one row per image)",
            ),
        ]
    if "split" in columns:
        expectations += [
            _rule("schema", E.ExpectColumnValuesToNotBeNull(column="split"), "split is set"),
            _rule(
                "schema",
                E.ExpectColumnValuesToBeInSet(column="split", value_set=list(ds.SPLITS)),
                f"split is one of {', '.join(ds.SPLITS)}",
            ),
        ]
    if "path" in columns:
        expectations += [
            _rule("schema", E.ExpectColumnValuesToNotBeNull(column="path"), "path is set"),
            _rule(
                "schema",
                E.ExpectColumnValuesToMatchRegex(column="path", regex=PATH_PATTERN),
                "path is relative and stays inside the dataset folder",
            ),
        ]
    return expectations


def _image_tags_table(rows: list[_Row], allowed_tags: list[str] | None) -> _Table:
    """One row per (image, tag); failures are grouped by tag, with the images it labels."""
    import great_expectations as gx
    import pandas as pd

    E = gx.expectations
    pairs = [(position, tag) for position, r in enumerate(rows) for tag in r.tags]
    frame = pd.DataFrame(
        {
            "image": [p for p, _ in pairs],
            "tag": pd.Series([t for _, t in pairs], dtype=object),
        }
    )
    expectations = [
        _rule(
            "tag_names",
            E.ExpectColumnValuesToMatchRegex(column="tag", regex=TAG_PATTERN),
            "tag names are lowercase, trimmed, single-spaced, 1 to 200 characters",
        )
    ]
    if allowed_tags is not None:
        expectations.append(
            _rule(
                "allowed_tags",
                E.ExpectColumnValuesToBeInSet(column="tag", value_set=list(allowed_tags)),
                f"every tag is one of the {len(allowed_tags)} allowed tags",
            )
        )

    def describe(positions: list[int], kind: str, column: str | None) -> list[dict]:
        by_tag: dict[str, list[str]] = {}
        for position in positions:
            image, tag = pairs[position]
            by_tag.setdefault(tag, []).extend(rows[image].files)
        return [{"tag": t, "count": len(files), "files": files} for t, files in sorted(by_tag.items())]

    return _Table("image_tags", frame, expectations, describe)


def _tag_counts_table(counts: dict[str, int], min_examples_per_tag: int) -> _Table:
    """One row per tag with the number of images it labels in the whole dataset."""
    import great_expectations as gx
    import pandas as pd

    items = list(counts.items())
    frame = pd.DataFrame(
        {
            "tag": pd.Series([t for t, _ in items], dtype=object),
            "images": [n for _, n in items],
        }
    )
    expectations = [
        _rule(
            "min_examples_per_tag",
            gx.expectations.ExpectColumnValuesToBeBetween(column="images", min_value=min_examples_per_tag),
            f"every tag labels at least {min_examples_per_tag} images",
        )
    ]

    def describe(positions: list[int], kind: str, column: str | None) -> list[dict]:
        return [
            {"tag": items[p][0], "count": items[p][1], "required": min_examples_per_tag} for p in positions
        ]

    return _Table("tag_counts", frame, expectations, describe)


def _leakage_table(rows: list[_Row], key: str, counted: str) -> _Table:
    """One row per distinct ``key`` value (``sha256`` or ``path``) with how many distinct
    ``counted`` values (``split`` or ``sha256``) its manifest rows have; exactly one is expected."""
    import great_expectations as gx
    import pandas as pd

    groups: dict[str, list[int]] = {}
    for position, r in enumerate(rows):
        value = getattr(r, key)
        if isinstance(value, str):
            groups.setdefault(value, []).append(position)
    items = list(groups.items())
    column = "splits" if counted == "split" else "owners"
    frame = pd.DataFrame(
        {
            key: pd.Series([k for k, _ in items], dtype=object),
            column: [len({str(getattr(rows[m], counted)) for m in members}) for _, members in items],
        }
    )
    description = {
        "sha256": "each image (sha256) is in exactly one split",
        "group": "the images of one group (a photo and its crops) are in one split",
        "path": "no image file is shared by two sha256 rows",
    }[key]
    expectations = [
        _rule(
            "split_leakage",
            gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=1, max_value=1),
            description,
        )
    ]

    listed = "splits" if counted == "split" else "sha256"

    def describe(positions: list[int], kind: str, _column: str | None) -> list[dict]:
        out = []
        for p in positions:
            value, members = items[p]
            out.append(
                {
                    key: value,
                    listed: sorted({str(getattr(rows[m], counted)) for m in members}),
                    "files": [f for m in members for f in rows[m].files],
                    "count": len(members),
                }
            )
        return out

    return _Table(
        {"sha256": "sha256s", "group": "groups", "path": "paths"}[key], frame, expectations, describe
    )


def _refused(dataset_dir: Path) -> list[dict]:
    """What ingest refused to read (``dataset.json``'s ``refused``), as it recorded it."""
    try:
        summary = json.loads((dataset_dir / ds.SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    refused = summary.get("refused") if isinstance(summary, dict) else None
    return [r for r in refused if isinstance(r, dict)] if isinstance(refused, list) else []


def _refused_table(refused: list[dict]) -> _Table:
    """One row per file or source ingest did not read; none is expected."""
    import great_expectations as gx
    import pandas as pd

    frame = pd.DataFrame(
        {
            "path": pd.Series([str(r.get("path")) for r in refused], dtype=object),
            "allowed": pd.Series([False] * len(refused), dtype=bool),
        }
    )
    expectations = [
        _rule(
            "allowed_paths",
            gx.expectations.ExpectColumnValuesToBeInSet(column="allowed", value_set=[True]),
            "no file lies outside the allowed roots",
        )
    ]

    def describe(positions: list[int], kind: str, column: str | None) -> list[dict]:
        return [
            {
                "refused": str(refused[p].get("path")),
                "resolved": str(refused[p].get("resolved")),
                "source": str(refused[p].get("source")),
                "reason": str(refused[p].get("reason")),
            }
            for p in positions
        ]

    return _Table("refused", frame, expectations, describe)


def _tables(
    rows: list[_Row],
    checks: list[tuple[bool, str | None]],
    *,
    allowed_tags: list[str] | None,
    min_examples_per_tag: int,
    min_side: int,
    max_pixels: int,
    refused: list[dict] = (),
) -> list[_Table]:
    return [
        _refused_table(list(refused)),
        _images_table(rows, checks, min_side, max_pixels),
        _image_tags_table(rows, allowed_tags),
        _tag_counts_table(_tag_counts(rows), min_examples_per_tag),
        _leakage_table(rows, "sha256", "split"),
        _leakage_table(rows, "group", "split"),
        _leakage_table(rows, "path", "sha256"),
    ]


def _plain(value: Any) -> Any:
    """A cell as a JSON value: numpy scalars to Python, NaN and NA to None."""
    if isinstance(value, (list, tuple, dict)):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        return value
    return value.item() if hasattr(value, "item") else value


def _image_problem(
    kind: str, column: str | None, value: Any, row: _Row, min_side: int, max_pixels: int
) -> str:
    """What is wrong with one image row, in words, for the report."""
    size = f"{row.width}x{row.height}"
    if column == "short_side":
        unreadable = " (the header could not be read at ingest)" if row.width * row.height == 0 else ""
        return f"{size} px, a side below {min_side} px{unreadable}"
    if column == "pixels":
        return f"{size} is {row.width * row.height:,} pixels, more than {max_pixels:,}"
    if column == "file_exists":
        return f"the file {row.path} is not in the dataset folder"
    if column == "decode_error":
        return str(value)
    if column == "tags_is_list":
        return "tags is not a list"
    if kind == "expect_column_values_to_not_be_null":
        return f"no {column}"
    if kind == "expect_column_values_to_be_unique":
        return f"{column} {value} is listed more than once"
    return f"{column} {value!r} is not valid"


def _tag_counts(rows: Iterable[_Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        for tag in set(r.tags):
            counts[tag] = counts.get(tag, 0) + 1
    return dict(sorted(counts.items()))


def _gx_context():
    """An in-memory GX context: no analytics, no progress bars, no temporary Data Docs site."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _run_suites(context, tables: list[_Table]) -> tuple[list[tuple[_Table, Any]], dict]:
    """Run each table's suite once on its DataFrame; returns the per-table results and GX's JSON."""
    import great_expectations as gx

    source = context.data_sources.add_pandas("imgtag_dataset")
    results = []
    for table in tables:
        batch = source.add_dataframe_asset(table.name).add_batch_definition_whole_dataframe(table.name)
        suite = context.suites.add(gx.ExpectationSuite(name=f"imgtag_{table.name}"))
        for expectation in table.expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"imgtag_{table.name}", data=batch, suite=suite)
        )
        result = definition.run(batch_parameters={"dataframe": table.frame}, result_format="COMPLETE")
        results.append((table, result))
    gx_json = {
        "success": all(r.success for _, r in results),
        "great_expectations_version": gx.__version__,
        "validations": {t.name: r.to_json_dict() for t, r in results},
    }
    return results, gx_json


def _failures(results: list[tuple[_Table, Any]]) -> list[Failure]:
    """The failed expectations of every table, with their offending rows described, in rule order."""
    failures = []
    for table, suite_result in results:
        for result in suite_result.results:
            if result.success:
                continue
            config = result.expectation_config
            details = result.result or {}
            error = None
            info = result.exception_info or {}
            if info.get("raised_exception"):
                error = info.get("exception_message")
            else:  # several metrics failed: {metric id: {"exception_message": ...}}
                messages = {v.get("exception_message") for v in info.values() if isinstance(v, dict)}
                error = "; ".join(sorted(m for m in messages if m)) or None
            positions = details.get("unexpected_index_list")
            column = config.kwargs.get("column")
            if positions is not None:
                # unexpected_list stops at 200 values (MAX_RESULT_RECORDS) even with COMPLETE; the
                # index list is whole, so the values are read back from the table by position.
                offending = table.describe([int(p) for p in positions], config.type, column)
            elif config.type == "expect_column_to_exist":
                offending = [{"column": column, "value": "missing"}]
            elif "observed_value" in details:
                offending = [{"value": details["observed_value"]}]
            else:
                offending = []
            failures.append(
                Failure(
                    rule=config.meta.get("rule", "?"),
                    expectation=config.type,
                    table=table.name,
                    column=column,
                    description=config.description or config.type,
                    unexpected_count=int(details.get("unexpected_count") or 0),
                    offending=offending,
                    error=error,
                )
            )
    order = list(RULES)
    failures.sort(key=lambda f: order.index(f.rule) if f.rule in order else len(order))
    return failures


def validate(
    dataset_dir: str | Path,
    report_dir: str | Path,
    *,
    allowed_tags: Iterable[str] | None = None,
    min_examples_per_tag: int = training_limits.default("min_examples_per_tag"),
    min_side: int = 32,
    max_pixels: int = 100_000_000,
    drop_rare_tags: bool = training_limits.default("drop_rare_tags"),
    progress: bool = False,
    workers: int | None = None,
) -> ValidationReport:
    """Check a dataset folder with Great Expectations and decode every image; write the reports.

    Args:
        dataset_dir: a dataset folder written by ``imgtag ingest`` (or its ``manifest.jsonl``).
        report_dir: where ``report.md``, ``report.json`` and ``gx_result.json`` go (created).
        allowed_tags: the only tags the dataset may use; None checks no vocabulary.
        min_examples_per_tag: images each tag must label, over the whole dataset.
        min_side: smallest width and height, in pixels.
        max_pixels: largest width x height (also the decoder's decompression-bomb limit).
        drop_rare_tags: take the tags with fewer than ``min_examples_per_tag`` images off the
            dataset (its ``manifest.jsonl`` and ``dataset.json`` are rewritten; an image left
            without a tag stays, a negative) and list them in the report, instead of failing
            ``min_examples_per_tag``.
        progress: show a progress bar on stderr while images are decoded.
        workers: decoding threads (default: the cgroup's CPUs, at most 16).

    Returns:
        The report; ``passed`` is False when any rule failed. It is written either way.

    Raises:
        DatasetError: the folder has no manifest, or a manifest line is not a JSON object.
    """
    started = time.perf_counter()
    dataset_dir = Path(dataset_dir)
    if dataset_dir.name == ds.MANIFEST_FILE:
        dataset_dir = dataset_dir.parent
    report_dir = Path(report_dir)
    allowed = None if allowed_tags is None else sorted({ds.normalize_tag(t) for t in allowed_tags})

    rows, dropped = _read_dropping_rare_tags(dataset_dir, min_examples_per_tag if drop_rare_tags else None)
    checks = _check_files(dataset_dir, rows, max_pixels, workers, progress)
    decoded = time.perf_counter()
    context = _gx_context()  # the first call imports great_expectations: about 3 s, timed apart
    imported = time.perf_counter()
    tables = _tables(
        rows,
        checks,
        allowed_tags=allowed,
        min_examples_per_tag=min_examples_per_tag,
        min_side=min_side,
        max_pixels=max_pixels,
        refused=_refused(dataset_dir),
    )
    results, gx_json = _run_suites(context, tables)
    failures = _failures(results)
    gx_done = time.perf_counter()

    params = {
        "min_examples_per_tag": min_examples_per_tag,
        "min_side": min_side,
        "max_pixels": max_pixels,
        "allowed_tags": allowed,
        "drop_rare_tags": drop_rare_tags,
    }
    report = _report(rows, tables, failures, dataset_dir, report_dir, params, dropped)
    _write_reports(report, gx_json, (started, decoded, imported, gx_done))
    return report


def _report(
    rows: list[_Row],
    tables: list[_Table],
    failures: list,
    dataset_dir: Path,
    report_dir: Path,
    params: dict,
    dropped: dict[str, int],
) -> ValidationReport:
    """The report of the checked rows (its timings come when it is written)."""
    return ValidationReport(
        passed=not failures,
        failures=failures,
        rules=_rule_results(tables, failures),
        report_dir=report_dir,
        dataset_dir=dataset_dir,
        images_checked=len(rows),
        tag_counts=_tag_counts(rows),
        images_per_split={s: sum(1 for r in rows if r.split == s) for s in ds.SPLITS},
        params=params,
        seconds={},
        negatives=sum(1 for r in rows if isinstance(r.raw.get("tags"), list) and not r.tags),
        dropped_tags=dropped,
    )


def _read_dropping_rare_tags(
    dataset_dir: Path, min_examples: int | None
) -> tuple[list[_Row], dict[str, int]]:
    """The manifest's rows, after taking the tags on fewer than ``min_examples`` images off the
    dataset (None: none are taken off), and the tags taken off with their counts."""
    rows = _read_manifest(dataset_dir)
    dropped: dict[str, int] = {}
    if min_examples is not None:
        dropped = {t: n for t, n in _tag_counts(rows).items() if n < min_examples}
        if dropped:
            _drop_tags(dataset_dir, rows, set(dropped))
            rows = _read_manifest(dataset_dir)
    return rows, dropped


def _rule_results(tables: list[_Table], failures: list) -> list[RuleResult]:
    """Each rule's outcome: skipped (no expectation checked it), failed or passed, with counts."""
    failed = {f.rule for f in failures}
    rules = []
    for name, description in RULES.items():
        count = sum(1 for t in tables for e in t.expectations if e.meta["rule"] == name)
        status = "skipped" if count == 0 else ("failed" if name in failed else "passed")
        rules.append(RuleResult(name, description, status, count, sum(1 for f in failures if f.rule == name)))
    return rules


def _write_reports(report: ValidationReport, gx_json, times: tuple[float, float, float, float]) -> None:
    """Write ``gx_result.json``, then ``report.json`` and ``report.md`` with the stage's timings
    (``times``: started, images decoded, Great Expectations imported, its suites run)."""
    started, decoded, imported, gx_done = times
    report_dir = report.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / GX_RESULT_JSON).write_text(
        json.dumps(gx_json, indent=2, default=str) + "\n", encoding="utf-8"
    )
    report.seconds = {
        "decode": round(decoded - started, 3),
        "great_expectations_import": round(imported - decoded, 3),
        "great_expectations": round(gx_done - imported, 3),
        "total": round(time.perf_counter() - started, 3),
    }
    (report_dir / REPORT_JSON).write_text(
        json.dumps(report.to_json_dict(), indent=2, default=str) + "\n", encoding="utf-8"
    )
    (report_dir / REPORT_MD).write_text(report.text(), encoding="utf-8")


def _drop_tags(dataset_dir: Path, rows: list[_Row], rare: set[str]) -> None:
    """Rewrite the manifest without the ``rare`` tags (every other field as it was) and, when the
    manifest is readable as a dataset, its ``dataset.json``."""
    lines = []
    for r in rows:
        raw = dict(r.raw)
        if isinstance(raw.get("tags"), list):
            raw["tags"] = [t for t in raw["tags"] if t not in rare]
        lines.append(json.dumps(raw, sort_keys=True) + "\n")
    atomic.write(dataset_dir / ds.MANIFEST_FILE, "".join(lines))
    try:
        dataset = ds.load(dataset_dir)
    except ds.DatasetError:
        return  # the schema rule reports the bad rows
    (dataset_dir / ds.SUMMARY_FILE).write_text(
        json.dumps(dataset.summary(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


# --- the readable report ---


def _code(value: Any) -> str:
    text = str(value).replace("`", "'").replace("\n", " ")
    return f"`{text}`"


def _files(files: list[str], limit: int = 5) -> str:
    shown = ", ".join(_code(f) for f in files[:limit])
    return shown + (f" and {len(files) - limit} more" if len(files) > limit else "")


def _offending_line(item: dict) -> str:
    """One offending value as a Markdown list item (without the dash)."""
    if "refused" in item:  # a file ingest did not read
        return (
            f"{_code(item['refused'])} ({item['source']}, really {_code(item['resolved'])}): {item['reason']}"
        )
    if "problem" in item:  # an image row
        return f"{_files(item['files'])} (manifest line {item['line']}): {item['problem']}"
    if "required" in item:  # a tag with too few images
        return f"tag {_code(item['tag'])}: {item['count']} images, at least {item['required']} required"
    if "tag" in item:  # a tag name that breaks a rule, with the images it labels
        return f"tag {_code(item['tag'])} on {item['count']} images: {_files(item['files'])}"
    if "splits" in item and "group" in item:
        return f"group {_code(item['group'])} is in {', '.join(item['splits'])}: {_files(item['files'])}"
    if "splits" in item:
        return f"sha256 {_code(item['sha256'])} is in {', '.join(item['splits'])}: {_files(item['files'])}"
    if "path" in item:
        owners = len(item["sha256"])
        return f"path {_code(item['path'])} belongs to {owners} sha256 rows: {_files(item['files'])}"
    if "column" in item:
        return f"column {_code(item['column'])} is missing from the manifest"
    return f"observed {_code(item.get('value'))}"


def _markdown(report: ValidationReport) -> str:
    verdict = "PASSED" if report.passed else "FAILED"
    splits = ", ".join(f"{s} {n}" for s, n in report.images_per_split.items())
    lines = [
        f"# Dataset validation {verdict}",
        "",
        f"Dataset `{report.dataset_dir}`: {report.images_checked} images ({splits}), "
        f"{len(report.tag_counts)} tags. Minimum examples per tag {report.params['min_examples_per_tag']}, "
        f"minimum side {report.params['min_side']} px, at most {report.params['max_pixels']:,} pixels.",
        "",
        "| rule | result | expectations | what it checks |",
        "|---|---|---|---|",
    ]
    if report.negatives:
        lines[4:4] = [f"{report.negatives} images have no tag: negatives, which no tag is right on.", ""]
    if report.dropped_tags:
        shown = ", ".join(f"{_code(t)} ({n})" for t, n in sorted(report.dropped_tags.items()))
        lines[4:4] = [
            f"Dropped {len(report.dropped_tags)} tags with fewer than {report.params['min_examples_per_tag']} "
            f"images (drop rare tags): {shown}. An image left without a tag stays, as a negative.",
            "",
        ]
    for r in report.rules:
        mark = {"passed": "pass", "failed": f"**FAIL** ({r.failed})", "skipped": "skipped"}[r.status]
        lines.append(f"| {r.name} | {mark} | {r.expectations} | {r.description} |")
    if report.failures:
        lines += ["", "## Failures"]
    for f in report.failures:
        where = f"{f.table}.{f.column}" if f.column else f.table
        lines += [
            "",
            f"### {f.rule}: {f.description}",
            "",
            f"GX `{f.expectation}` on `{where}`"
            + (f": {f.unexpected_count} unexpected" if f.unexpected_count else "")
            + ".",
        ]
        if f.error:
            lines.append(f"The expectation could not be evaluated: {f.error}")
        if f.offending:
            lines.append("")
            lines += [f"- {_offending_line(item)}" for item in f.offending[:MD_LIST_LIMIT]]
            if len(f.offending) > MD_LIST_LIMIT:
                lines.append(f"- ... and {len(f.offending) - MD_LIST_LIMIT} more (see {REPORT_JSON})")
        if f.rule == "min_examples_per_tag":
            lines += [
                "",
                f"Rare tags: {', '.join(_code(t) for t in sorted(report.rare_tags))}. Label more images, or "
                "drop them and train on the other tags: `imgtag validate --drop-rare-tags` (the trigger "
                "form's *Drop rare tags*, `drop_rare_tags`) lists them here instead of failing.",
            ]
    lines += ["", f"Machine-readable: `{REPORT_JSON}`; Great Expectations' results: `{GX_RESULT_JSON}`.", ""]
    return "\n".join(lines)
