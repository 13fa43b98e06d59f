"""The recommend: spec section, reading interactions and item texts, and the split protocols."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests._recommend import N_USERS, write_task

from lmforge.apps.recommend import hold_out, load_interactions, make_splits
from lmforge.cli.__main__ import main
from lmforge.config import RecommendConfig, spec_from_dict
from lmforge.errors import ConfigError, DataError


def _cfg(root: Path, **keys) -> RecommendConfig:
    section = {"interactions": {"path": str(root / "interactions.csv"), "user_column": "user", "item_column": "movie",
                                "rating_column": "stars", "time_column": "ts"},
               "items": {"path": str(root / "items.csv"), "id_column": "movie", "text_columns": ["genre", "title"]},
               "min_rating": 4, **keys}
    return spec_from_dict({"recommend": section}).recommend


def test_the_spec_section_has_the_contract_keys_and_checks_them() -> None:
    spec = spec_from_dict({"recommend": {"interactions": {"path": "r.csv", "user_column": "u", "item_column": "i",
                                                          "rating_column": "r", "time_column": "t"},
                                         "items": {"path": "i.csv", "id_column": "i", "text_columns": ["a", "b"]},
                                         "min_rating": 3.5, "split": "loo", "seed": 3, "require_text": True}})
    rec = spec.recommend
    assert (rec.interactions.user_column, rec.items.text_columns, rec.min_rating, rec.split, rec.seed) == (
        "u", ["a", "b"], 3.5, "loo", 3)
    assert rec.require_text is True
    with pytest.raises(ConfigError, match=r"recommend.split must be one of 'ratio', 'loo', 'cold', 'none', got 'random'"):
        spec_from_dict({"recommend": {"split": "random"}})
    with pytest.raises(ConfigError, match=r"Unknown key 'recommend.interactions.usr_column'. Did you mean 'user_column'"):
        spec_from_dict({"recommend": {"interactions": {"usr_column": "u"}}})
    with pytest.raises(ConfigError, match=r"recommend.test_fraction must be in \(0, 1\), got 0.0"):
        spec_from_dict({"recommend": {"test_fraction": 0}})
    with pytest.raises(ConfigError, match=r"recommend.items.text_columns must be a list of a string or null"):
        spec_from_dict({"recommend": {"items": {"text_columns": "title"}}})


def test_loading_filters_by_rating_dedupes_and_keeps_ids_verbatim(tmp_path: Path) -> None:
    write_task(tmp_path)
    data = load_interactions(_cfg(tmp_path))
    rep = data.report
    assert rep["duplicates_dropped"] == 1
    assert rep["below_min_rating"] == rep["rows"] - rep["positives"] - 1
    assert rep["below_min_rating"] > 0
    assert data.user_ids[0] == "u00" and all(i.startswith("m") and len(i) == 4 for i in data.item_ids)
    assert data.texts[data.item_ids.index("m007")] == "comedy. item 7 war"
    # positives of a user are in time order: u00's first rated item first
    assert data.item_ids[data.items[0]] == "m000"
    assert rep["items_without_text"] == 0


def test_missing_columns_list_the_found_ones(tmp_path: Path) -> None:
    write_task(tmp_path)
    with pytest.raises(DataError, match=r"has no column recommend.interactions.user_column = 'uid'. "
                                        r"Found columns: user, movie, stars, ts"):
        load_interactions(_cfg(tmp_path, interactions={"path": str(tmp_path / "interactions.csv"), "user_column": "uid",
                                                       "item_column": "movie", "rating_column": "stars"}))
    with pytest.raises(DataError, match=r"text_columns\[1\] = 'plot'. Found columns: movie, title, genre"):
        load_interactions(_cfg(tmp_path, items={"path": str(tmp_path / "items.csv"), "id_column": "movie",
                                                "text_columns": ["title", "plot"]}))


def test_items_without_text_warn_or_stop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_task(tmp_path, no_text=("m000", "m001"))
    with caplog.at_level(logging.WARNING):
        data = load_interactions(_cfg(tmp_path))
    assert data.report["items_without_text"] == 2
    assert data.report["items_without_text_examples"] == ["m000", "m001"]
    assert "2 of the 31 interacted items have no text" in caplog.text
    assert data.texts[data.item_ids.index("m000")] == ""
    with pytest.raises(DataError, match=r"2 of the 31 interacted items have no text .* recommend.require_text: false"):
        load_interactions(_cfg(tmp_path, require_text=True))


def test_a_rating_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    inter, _ = write_task(tmp_path)
    inter.write_text(inter.read_text(encoding="utf-8").replace(",5,", ",five,", 1), encoding="utf-8")
    with pytest.raises(DataError, match=r"1 values of column 'stars' are not numbers \(first: 'five'\)"):
        load_interactions(_cfg(tmp_path))


def test_ratio_split_holds_out_part_of_every_user_seeded(tmp_path: Path) -> None:
    write_task(tmp_path)
    data = load_interactions(_cfg(tmp_path))
    s = make_splits(data, _cfg(tmp_path, split="ratio", seed=1))
    assert len(np.intersect1d(s.train, s.test)) == 0 and len(np.intersect1d(s.fit, s.val)) == 0
    assert sorted(np.concatenate([s.fit, s.val]).tolist()) == s.train.tolist()
    assert len(np.unique(data.users[s.test])) == N_USERS  # every user has enough positives
    for u in range(N_USERS):
        assert (data.users[s.fit] == u).any()  # never everything held out
    again = make_splits(data, _cfg(tmp_path, split="ratio", seed=1))
    other = make_splits(data, _cfg(tmp_path, split="ratio", seed=2))
    assert again.test.tolist() == s.test.tolist()
    assert other.test.tolist() != s.test.tolist()


def test_loo_holds_out_each_users_last_positive(tmp_path: Path) -> None:
    write_task(tmp_path)
    data = load_interactions(_cfg(tmp_path))
    s = make_splits(data, _cfg(tmp_path, split="loo"))
    assert len(s.test) == N_USERS
    for row in s.test:  # rows of a user are in time order, so the held one is the user's last row
        assert row == np.flatnonzero(data.users == data.users[row]).max()


def test_cold_split_holds_items_out_entirely(tmp_path: Path) -> None:
    write_task(tmp_path)
    data = load_interactions(_cfg(tmp_path))
    s = make_splits(data, _cfg(tmp_path, split="cold"))
    test_items = set(data.items[s.test].tolist())
    assert test_items and not test_items & set(data.items[s.train].tolist())
    assert test_items <= set(s.test_candidates.tolist())
    assert len(s.test_candidates) == round(0.2 * 31)
    assert not set(data.items[s.val].tolist()) & set(data.items[s.fit].tolist())


def test_none_tests_nothing_and_few_positive_users_are_reported_and_kept(tmp_path: Path) -> None:
    write_task(tmp_path)
    data = load_interactions(_cfg(tmp_path, min_positives=7))
    few = data.report["users_with_too_few_positives"]
    assert 0 < few < N_USERS and data.report["too_few_examples"]
    s = make_splits(data, _cfg(tmp_path, split="none", min_positives=7))
    assert len(s.test) == 0 and len(s.train) == len(data.users)
    short = [data.user_ids.index(u) for u in data.report["too_few_examples"]]
    assert not np.isin(data.users[s.val], short).any()  # never held out
    assert np.isin(data.users[s.fit], short).any()  # but trained on


def test_hold_out_ratio_keeps_one_positive_of_a_two_positive_user() -> None:
    users, items = np.array([0, 0]), np.array([0, 1])
    h = hold_out("ratio", users, items, np.arange(2), 0.9, np.array([True]), np.random.default_rng(0))
    assert len(h.keep) == 1 and len(h.held) == 1


def test_the_cli_says_what_is_missing_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_task(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"recommend": {"interactions": {"path": str(tmp_path / "interactions.csv")}}}))
    assert main(["recommend", "train", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'interactions.csv'} has no column recommend.interactions.user_column = "
                   "'user_id', recommend.interactions.item_column = 'item_id'. Found columns: user, movie, stars, ts. "
                   "Set the recommend.* column keys to the file's names."]
    spec.write_text(yaml.safe_dump({"recommend": {"split": "loo-ish"}}))
    assert main(["recommend", "train", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "recommend.split must be one of" in capsys.readouterr().err


def test_dates_order_histories_and_a_bad_date_is_named(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\n"
                    "a,x,2024-03-01\na,y,2024-01-01T10:00:00\na,z,2024-02-01\nb,x,2024-01-05\nb,y,2024-01-06\n",
                    encoding="utf-8")
    cfg = spec_from_dict({"recommend": {"interactions": {"path": str(path)}, "split": "loo",
                                        "min_positives": 2}}).recommend
    data = load_interactions(cfg)
    assert [data.item_ids[i] for i in data.items[data.users == 0]] == ["y", "z", "x"]  # oldest first
    s = make_splits(data, cfg)
    assert sorted((data.user_ids[data.users[r]], data.item_ids[data.items[r]]) for r in s.test) == [("a", "x"),
                                                                                                   ("b", "y")]
    path.write_text("user_id,item_id,timestamp\na,x,2024-03-01\na,y,soon\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"1 values of column 'timestamp' are neither numbers nor dates \(first: 'soon'\)"):
        load_interactions(cfg)
