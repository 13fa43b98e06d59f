"""The prepare stage for ``task: generate``: question/answer files and chat turns in, the splits
and their report out; every bad input a clear ``DataError``; the packaged ``support-answers``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmforge.catalog import DATASETS, load_dataset
from lmforge.config import spec_from_dict
from lmforge.data import clean_answer, prepare, read_examples
from lmforge.errors import ConfigError, DataError
from lmforge.rundir import RunDir

VOCAB = ("order refund account password delivery invoice payment address newsletter cancel track change "
         "shipping fee review complaint agent human email phone website login profile card bank").split()


def questions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(VOCAB, size=9)) + f" number {i}" for i in range(n)]


def gen_spec(**data: object) -> object:
    return spec_from_dict({"task": "generate", "data": data})


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_pairs_are_cleaned_deduplicated_on_the_prompt_and_split(tmp_path: Path) -> None:
    prompts = questions(50)
    records = [{"prompt": p, "response": f"Answer {i}.\r\n\r\n\r\n1. <b>Log in</b>\r\n2. Go"} for i, p in enumerate(prompts)]
    records.append({"prompt": prompts[3].upper(), "response": "a different answer"})  # an exact duplicate prompt
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    run = RunDir(tmp_path / "run")
    report = prepare(gen_spec(path=str(path)), run)
    assert sorted(p.name for p in run.data_dir.iterdir()) == ["data_report.json", "test.jsonl", "train.jsonl",
                                                              "val.jsonl"]
    assert report["counts"] == {"train": 40, "val": 5, "test": 5}
    assert report["exact_duplicates"] == 1 and report["dropped"]["duplicates"] == 1
    rows = [r for split in ("train", "val", "test") for r in read_examples(run, split)]
    assert sorted(r["prompt"] for r in rows) == sorted(prompts)
    by_prompt = {r["prompt"]: r["response"] for r in rows}
    assert by_prompt[prompts[7]] == "Answer 7.\n\n1. Log in\n2. Go"
    assert report["shape"] == "prompt/response" and report["task"] == "generate"
    assert run.read_manifest()["data"]["counts"] == report["counts"]


def test_the_split_is_seeded(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": p, "response": "ok"} for p in questions(40)])
    first, second, other = (RunDir(tmp_path / n) for n in ("a", "b", "c"))
    prepare(gen_spec(path=str(path)), first)
    prepare(gen_spec(path=str(path)), second)
    prepare(gen_spec(path=str(path), seed=7), other)
    assert first.split_path("test").read_bytes() == second.split_path("test").read_bytes()
    assert first.split_path("test").read_bytes() != other.split_path("test").read_bytes()


def test_chat_turns_keep_their_shape(tmp_path: Path) -> None:
    records = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"reply {i}"}]}
               for i, q in enumerate(questions(20))]
    run = RunDir(tmp_path / "run")
    report = prepare(gen_spec(path=str(write_jsonl(tmp_path / "chat.jsonl", records))), run)
    rows = read_examples(run, "train")
    assert report["shape"] == "messages"
    assert all(list(r) == ["messages"] and r["messages"][-1]["role"] == "assistant" for r in rows)


def test_csv_with_configured_column_names(tmp_path: Path) -> None:
    frame = pd.DataFrame({"instruction": questions(20), "answer": [f"say {i}" for i in range(20)]})
    frame.to_csv(tmp_path / "qa.csv", index=False)
    run = RunDir(tmp_path / "run")
    prepare(gen_spec(path=str(tmp_path / "qa.csv"), prompt_column="instruction", response_column="answer"), run)
    assert {r["response"] for r in read_examples(run, "train")} <= {f"say {i}" for i in range(20)}


def test_missing_columns_list_the_found_ones(tmp_path: Path) -> None:
    frame = pd.DataFrame({"instruction": ["a", "b"], "response": ["x", "y"], "intent": ["i", "j"]})
    frame.to_csv(tmp_path / "qa.csv", index=False)
    with pytest.raises(DataError) as info:
        prepare(gen_spec(path=str(tmp_path / "qa.csv")), RunDir(tmp_path / "run"))
    assert str(info.value) == (
        f"data.prompt_column is 'prompt' but {tmp_path / 'qa.csv'} has no such column. Columns found: 'instruction', "
        "'response', 'intent'. Set data.prompt_column and data.response_column to the question and answer columns, "
        "or data.messages_column to a column of chat turns."
    )
    assert not (tmp_path / "run" / "data").exists()


def test_an_empty_response_names_its_row(tmp_path: Path) -> None:
    frame = pd.DataFrame({"prompt": ["q one", "q two", "q three"], "response": ["fine", "   ", "ok"]})
    frame.to_csv(tmp_path / "qa.csv", index=False)
    with pytest.raises(DataError) as info:
        prepare(gen_spec(path=str(tmp_path / "qa.csv")), RunDir(tmp_path / "run"))
    assert str(info.value) == (
        f"row 2 of {tmp_path / 'qa.csv'} has an empty response (data.response_column 'response'). "
        "Fill it in or drop the row."
    )


def test_a_chat_that_does_not_end_with_the_answer_is_an_error(tmp_path: Path) -> None:
    records = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
               {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "hello"}]}]
    with pytest.raises(DataError) as info:
        prepare(gen_spec(path=str(write_jsonl(tmp_path / "c.jsonl", records))), RunDir(tmp_path / "run"))
    assert str(info.value) == (
        f"line 2 of {tmp_path / 'c.jsonl'}: the last turn must be the assistant's answer, got role 'user'."
    )


def test_the_check_hook_runs_before_anything_is_written(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": p, "response": "ok"} for p in questions(20)])
    seen: list[str] = []

    def refuse(examples: list[dict[str, object]], wheres: list[str]) -> list[str]:
        seen.extend(wheres)
        raise DataError(f"{wheres[0]}: too long")

    with pytest.raises(DataError, match=r"^line \d+ of .*p\.jsonl: too long$"):
        prepare(gen_spec(path=str(path)), RunDir(tmp_path / "run"), check_examples=refuse)
    assert len(seen) == 20 and not (tmp_path / "run" / "data").exists()


def test_augmentation_is_refused_for_generation() -> None:
    with pytest.raises(ConfigError) as info:
        spec_from_dict({"task": "generate", "data": {"augment": {"enabled": True}}})
    assert str(info.value) == (
        "data.augment.enabled is true but task is 'generate': augmentation (word swaps, deletions) would corrupt "
        "the answers a model learns to write. Set data.augment.enabled=false."
    )


def test_clean_answer_keeps_line_breaks() -> None:
    assert clean_answer("Steps:\r\n\r\n\r\n\r\n1.  <i>Open</i>   it\r\n2. Close&amp;done ") == "Steps:\n\n1. Open it\n2. Close&done"


def test_support_answers_ships_with_its_licence_and_covers_27_intents(tmp_path: Path) -> None:
    entry = DATASETS["support-answers"]
    assert entry.task == "generate" and entry.installed() and entry.folder is not None
    licence = (entry.folder / "LICENSE.txt").read_text(encoding="utf-8")
    notice = (entry.folder / "NOTICE.txt").read_text(encoding="utf-8")
    assert licence.startswith("Community Data License Agreement – Sharing – Version 1.0")
    assert "(c) Bitext Innovations, 2023" in notice and "NOTICE OF CHANGES" in notice
    frame = load_dataset("support-answers")
    assert len(frame) == 594 <= 600
    assert Counter(frame["intent"]) == {intent: 22 for intent in set(frame["intent"])}
    assert frame["intent"].nunique() == 27 and frame["category"].nunique() == 11
    assert (frame["response"].str.len() > 0).all() and not frame["response"].str.contains("\r").any()
    run = RunDir(tmp_path / "run")
    report = prepare(spec_from_dict({"task": "generate"}), run)
    assert report["source"] == "catalog:support-answers"
    assert sum(report["counts"].values()) == 594 - report["dropped"]["duplicates"] - report["dropped"]["leakage"]


def test_read_examples_names_malformed_lines(tmp_path: Path) -> None:
    from lmforge.errors import RunDirError

    run = RunDir(tmp_path / "run")
    run.data_dir.mkdir(parents=True)
    run.split_path("train").write_text(
        json.dumps({"prompt": "q", "response": "a"}) + "\n" + json.dumps({"text": "x", "label": "y"}) + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n", encoding="utf-8")
    with pytest.raises(RunDirError) as info:
        read_examples(run, "train")
    message = str(info.value)
    assert message.startswith(f"{run.split_path('train')} has 2 malformed lines: line 2: expected ")
    assert "; line 3: expected " in message and message.endswith("Run `lmforge prepare` (or `lmforge run`) first "
                                                                 "to create the data splits.")
