"""The ``validate`` stage: Great Expectations rules on real dataset folders the tests write.

Each test draws small images with OpenCV, lays them out as ``imgtag ingest`` does
(``images/<sha[:2]>/<sha><ext>`` plus ``manifest.jsonl``), breaks one thing, and checks that
the report fails on that rule alone and names the file or the tag in both ``report.md`` and
``report.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.training import dataset as ds
from pipelines.training.validate import RULES, read_allowed_tags, validate

MIN = 3  # examples per tag the tests require


def draw(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 4, (int(rng.integers(256)), 80, 200), -1)
    return image


def add_image(
    root: Path,
    name: str,
    tags: tuple[str, ...],
    seed: int,
    *,
    split: str | None = None,
    size: int = 48,
    data: bytes | None = None,
) -> ds.Example:
    """Encode an image (``name``'s extension picks the format), store it by sha256, return its row."""
    if data is None:
        ok, encoded = cv2.imencode(Path(name).suffix, draw(seed, size))
        assert ok
        data = encoded.tobytes()
    sha = hashlib.sha256(data).hexdigest()
    relative = f"{ds.IMAGES_DIR}/{sha[:2]}/{sha}{Path(name).suffix}"
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_bytes(data)
    fmt = "png" if name.endswith(".png") else "jpeg"
    return ds.Example(
        sha,
        relative,
        tuple(sorted(tags)),
        split or ds.split_for(sha),
        ("folder",),
        (f"/uploads/{name}",),
        size,
        size,
        fmt,
        len(data),
    )


def good_examples(root: Path, per_tag: int = MIN + 1) -> list[ds.Example]:
    """``per_tag`` images of each of cat, dog and "coffee mug" (every third a PNG)."""
    examples = []
    for t, tag in enumerate(("cat", "dog", "coffee mug")):
        for i in range(per_tag):
            name = f"{tag.replace(' ', '_')}_{i}.{'png' if i % 3 == 2 else 'jpg'}"
            tags = (tag,) if tag == "coffee mug" else (tag, "animal")
            examples.append(add_image(root, name, tags, 100 * t + i))
    return examples


def run(root: Path, tmp_path: Path, **kwargs):
    report = validate(root, tmp_path / "validation", min_examples_per_tag=MIN, **kwargs)
    as_json = json.loads(report.report_json.read_text())
    markdown = report.report_md.read_text()
    assert as_json["passed"] is report.passed and markdown == report.text()
    return report, as_json, markdown


def failure(as_json: dict, rule: str) -> list[dict]:
    """All offending values of one rule in report.json."""
    return [item for f in as_json["failures"] if f["rule"] == rule for item in f["offending"]]


def test_a_good_dataset_passes_and_writes_both_reports(tmp_path):
    root = tmp_path / "dataset"
    ds.write(root, good_examples(root))

    allowed = ["cat", "dog", "coffee mug", "animal", "bird"]
    report, as_json, markdown = run(root, tmp_path, allowed_tags=allowed)

    assert report.passed and report.failures == []
    assert {r.name: r.status for r in report.rules} == {name: "passed" for name in RULES}
    assert (report.report_dir / "gx_result.json").is_file()
    gx = json.loads((report.report_dir / "gx_result.json").read_text())
    assert gx["success"] is True
    assert set(gx["validations"]) == {
        "images",
        "image_tags",
        "tag_counts",
        "sha256s",
        "groups",
        "paths",
        "refused",
    }
    summary = report.to_dict()
    assert summary["passed"] is True and summary["failed_rules"] == []
    assert summary["images_checked"] == 12
    assert summary["tags"] == {"animal": 8, "cat": 4, "coffee mug": 4, "dog": 4}
    assert Path(summary["report"]) == report.report_md and Path(summary["report_json"]) == report.report_json
    assert as_json["counts"]["images"] == 12 and all(r["success"] for r in as_json["rules"])
    assert "# Dataset validation PASSED" in markdown and "| min_examples_per_tag | pass |" in markdown


def test_without_an_allowed_list_that_rule_is_skipped(tmp_path):
    root = tmp_path / "dataset"
    ds.write(root, good_examples(root))

    report, as_json, markdown = run(root, tmp_path)

    assert report.passed
    assert {r["name"]: r["status"] for r in as_json["rules"]}["allowed_tags"] == "skipped"
    assert "| allowed_tags | skipped |" in markdown


def test_a_truncated_jpeg_and_a_rare_tag_fail_naming_the_file_and_the_tag(tmp_path):
    root = tmp_path / "dataset"
    examples = good_examples(root)
    ok, encoded = cv2.imencode(".jpg", draw(7, 64))
    examples.append(
        add_image(
            root, "broken_upload.jpg", ("cat",), 0, size=64, data=encoded.tobytes()[: len(encoded) // 3]
        )
    )
    examples += [add_image(root, f"hex_{i}.jpg", ("hexagon",), 900 + i) for i in range(2)]
    ds.write(root, examples)

    report, as_json, markdown = run(root, tmp_path)

    assert not report.passed
    assert report.failed_rules == ["min_examples_per_tag", "decodes"]
    assert as_json["failed_rules"] == ["min_examples_per_tag", "decodes"]
    assert failure(as_json, "min_examples_per_tag") == [{"tag": "hexagon", "count": 2, "required": MIN}]
    [broken] = failure(as_json, "decodes")
    assert broken["files"] == ["/uploads/broken_upload.jpg"] and "truncated" in broken["problem"]
    by_rule = {f["rule"]: f for f in as_json["failures"]}
    assert by_rule["decodes"]["expectation"] == "expect_column_values_to_be_null"
    assert by_rule["min_examples_per_tag"]["expectation"] == "expect_column_values_to_be_between"
    assert "broken_upload.jpg" in markdown and "hexagon" in markdown
    assert "| decodes | **FAIL** (1) |" in markdown and "| min_examples_per_tag | **FAIL** (1) |" in markdown
    assert "broken_upload.jpg" in report.text() and "hexagon" in report.text()
    assert report.to_dict()["failed_rules"] == ["min_examples_per_tag", "decodes"]


def test_rare_tags_fail_with_the_option_to_drop_them_and_are_dropped_with_it(tmp_path):
    """A long tail of tags under the minimum fails the run, naming them and the option; with
    ``drop_rare_tags`` they come off the dataset and the report lists them. An image left
    without a tag stays, as a negative, and so does an image that had none."""
    root = tmp_path / "dataset"
    examples = good_examples(root)
    examples += [add_image(root, f"hex_{i}.jpg", ("cat", "hexagon"), 900 + i) for i in range(2)]
    examples.append(add_image(root, "rare.jpg", ("unicorn",), 950))
    examples.append(add_image(root, "nothing.jpg", (), 960))
    ds.write(root, examples)

    report, as_json, markdown = run(root, tmp_path)
    assert report.failed_rules == ["min_examples_per_tag"]
    assert sorted(report.rare_tags) == ["hexagon", "unicorn"] and report.to_dict()["rare_tags"] == [
        "hexagon",
        "unicorn",
    ]
    assert "--drop-rare-tags" in markdown and "Drop rare tags" in markdown and "`unicorn`" in markdown
    assert report.negatives == 1 and "1 images have no tag" in markdown

    report, as_json, markdown = run(root, tmp_path, drop_rare_tags=True)
    assert report.passed, markdown
    assert report.dropped_tags == {"hexagon": 2, "unicorn": 1} == as_json["dropped_tags"]
    assert report.to_dict()["dropped_tags"] == {"hexagon": 2, "unicorn": 1}
    assert (
        "Dropped 2 tags with fewer than 3 images (drop rare tags): `hexagon` (2), `unicorn` (1)" in markdown
    )
    assert report.negatives == 2  # nothing.jpg, and rare.jpg now
    dataset = ds.load(root)
    assert dataset.tags == ["animal", "cat", "coffee mug", "dog"] and len(dataset.examples) == len(examples)
    assert json.loads((root / ds.SUMMARY_FILE).read_text())["negatives"] == 2
    again, _, _ = run(root, tmp_path, drop_rare_tags=True)  # nothing left to drop
    assert again.passed and again.dropped_tags == {}


def test_the_same_image_in_two_splits_is_split_leakage(tmp_path):
    root = tmp_path / "dataset"
    examples = good_examples(root)
    twin = examples[0]
    rows = [e.to_json() for e in examples]
    other = "test" if twin.split != "test" else "train"
    copy = {**json.loads(twin.to_json()), "split": other, "origins": ["/uploads/copy_of_cat.jpg"]}
    rows.append(json.dumps(copy))
    root.mkdir(parents=True, exist_ok=True)
    (root / ds.MANIFEST_FILE).write_text("\n".join(rows) + "\n")  # by hand: ds.write would keep it too

    report, as_json, markdown = run(root, tmp_path)

    assert "split_leakage" in report.failed_rules
    [leak] = failure(as_json, "split_leakage")
    assert leak["sha256"] == twin.sha256 and leak["splits"] == sorted([twin.split, other])
    assert set(leak["files"]) == {"/uploads/cat_0.jpg", "/uploads/copy_of_cat.jpg"}
    assert "copy_of_cat.jpg" in markdown
    # The duplicate row also breaks the schema's one-row-per-sha256, and nothing else.
    assert set(report.failed_rules) == {"schema", "split_leakage"}
    assert {f["expectation"] for f in as_json["failures"] if f["rule"] == "schema"} == {
        "expect_column_values_to_be_unique"
    }


def test_one_file_under_two_sha256_is_split_leakage(tmp_path):
    root = tmp_path / "dataset"
    examples = good_examples(root)
    stolen = examples[1]
    examples.append(
        ds.Example(
            "f" * 64,
            stolen.path,
            ("cat",),
            "test",
            ("folder",),
            ("/uploads/impostor.jpg",),
            48,
            48,
            "jpeg",
            stolen.size,
        )
    )
    ds.write(root, examples)

    report, as_json, _ = run(root, tmp_path)

    assert report.failed_rules == ["split_leakage"]
    [shared] = failure(as_json, "split_leakage")
    assert shared["path"] == stolen.path and shared["sha256"] == sorted([stolen.sha256, "f" * 64])


def test_an_allowed_tags_list_rejects_an_unknown_tag(tmp_path):
    root = tmp_path / "dataset"
    ds.write(root, good_examples(root))
    allowed = tmp_path / "allowed.txt"
    allowed.write_text("# the vocabulary\ncat\nDog\n\nanimal\n")

    assert read_allowed_tags(allowed) == ["animal", "cat", "dog"]
    report, as_json, markdown = run(root, tmp_path, allowed_tags=read_allowed_tags(allowed))

    assert report.failed_rules == ["allowed_tags"]
    [unknown] = failure(as_json, "allowed_tags")
    assert unknown["tag"] == "coffee mug" and unknown["count"] == MIN + 1
    assert "/uploads/coffee_mug_0.jpg" in unknown["files"]
    assert "coffee mug" in markdown and "expect_column_values_to_be_in_set" in markdown


def test_a_missing_image_file_is_reported(tmp_path):
    root = tmp_path / "dataset"
    examples = good_examples(root)
    ds.write(root, examples)
    gone = examples[5]
    (root / gone.path).unlink()

    report, as_json, markdown = run(root, tmp_path)

    assert report.failed_rules == ["files_exist"]
    [missing] = failure(as_json, "files_exist")
    assert missing["files"] == list(gone.origins) and missing["path"] == gone.path
    assert gone.origins[0] in markdown


def test_small_and_unreadable_images_fail_image_size(tmp_path):
    root = tmp_path / "dataset"
    examples = good_examples(root)
    examples.append(add_image(root, "thumbnail.jpg", ("cat",), 5, size=16))
    ok, encoded = cv2.imencode(".png", draw(6))
    unreadable = add_image(root, "unreadable.png", ("dog",), 0, data=encoded.tobytes())
    examples.append(ds.Example(**{**unreadable.__dict__, "width": 0, "height": 0, "format": ""}))
    ds.write(root, examples)

    report, as_json, markdown = run(root, tmp_path)

    assert report.failed_rules == ["image_size"]
    problems = {item["files"][0]: item["problem"] for item in failure(as_json, "image_size")}
    assert set(problems) == {"/uploads/thumbnail.jpg", "/uploads/unreadable.png"}
    assert problems["/uploads/thumbnail.jpg"].startswith("16x16")
    assert "thumbnail.jpg" in markdown and "unreadable.png" in markdown


def test_schema_and_tag_name_problems_name_the_rows(tmp_path):
    root = tmp_path / "dataset"
    examples = good_examples(root)
    rows = [json.loads(e.to_json()) for e in examples]
    rows[0]["split"] = "dev"
    rows[1]["sha256"] = rows[1]["sha256"].upper()
    rows[2]["tags"] = "cat"  # not a list (an empty one is a negative, and fine)
    rows[3]["tags"] = ["Cat ", "cat"]
    for row in rows:
        del row["origins"]  # a column missing from the whole manifest
    root.mkdir(parents=True, exist_ok=True)
    (root / ds.MANIFEST_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))

    report, as_json, markdown = run(root, tmp_path)

    assert set(report.failed_rules) == {"schema", "tag_names", "min_examples_per_tag"}
    schema = {(f["expectation"], f["column"]) for f in as_json["failures"] if f["rule"] == "schema"}
    assert schema == {
        ("expect_column_to_exist", "origins"),
        ("expect_column_values_to_be_in_set", "split"),
        ("expect_column_values_to_match_regex", "sha256"),
        ("expect_column_values_to_be_in_set", "tags_is_list"),
    }
    assert [item["tag"] for item in failure(as_json, "tag_names")] == ["Cat "]
    assert failure(as_json, "min_examples_per_tag") == [{"tag": "Cat ", "count": 1, "required": MIN}]
    # Without origins, images are named by their path in the dataset.
    assert rows[0]["path"] in markdown and "'dev'" in markdown


def test_every_failing_row_is_reported_beyond_the_values_gx_lists(tmp_path):
    """GX stops ``unexpected_list`` at 200 values even with COMPLETE; the report does not."""
    root = tmp_path / "dataset"
    examples = [
        ds.Example(
            hashlib.sha256(str(i).encode()).hexdigest(),
            f"images/00/{i}.jpg",
            ("cat",),
            "train",
            ("folder",),
            (f"/uploads/gone_{i}.jpg",),
            48,
            48,
            "jpeg",
            1000,
        )
        for i in range(250)
    ]
    ds.write(root, examples)

    report, as_json, markdown = run(root, tmp_path)

    assert report.failed_rules == ["files_exist"]
    assert len(failure(as_json, "files_exist")) == 250
    assert "and 200 more (see report.json)" in markdown


def test_an_empty_manifest_fails_on_its_row_count_alone(tmp_path):
    root = tmp_path / "dataset"
    ds.write(root, [])

    report, as_json, _ = run(root, tmp_path)

    assert report.failed_rules == ["schema"]
    assert [f["expectation"] for f in as_json["failures"]] == ["expect_table_row_count_to_be_between"]
    assert report.to_dict()["images_checked"] == 0


def test_a_folder_without_manifest_is_an_error(tmp_path):
    with pytest.raises(ds.DatasetError, match="no manifest"):
        validate(tmp_path, tmp_path / "validation")


def test_a_group_in_two_splits_is_split_leakage(tmp_path):
    """A crop in train and its photo in test: the group, not the bytes, leaks."""
    root = tmp_path / "dataset"
    examples = good_examples(root)
    photo, crop = examples[0], examples[1]
    other = "test" if photo.split != "test" else "train"
    examples[0] = dataclasses.replace(photo, group="photo-1")
    examples[1] = dataclasses.replace(crop, group="photo-1", split=other)
    ds.write(root, examples)

    report, as_json, markdown = run(root, tmp_path)

    assert report.failed_rules == ["split_leakage"]
    [leak] = failure(as_json, "split_leakage")
    assert leak["group"] == "photo-1" and leak["splits"] == sorted({photo.split, other})
    assert "photo-1" in markdown
