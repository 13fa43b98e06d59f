"""MinHash, exact and near-duplicate detection, conflicting labels, leakage."""

from __future__ import annotations

import numpy as np

from lmforge.data import find_duplicates, find_leakage, minhash_signatures, near_duplicate_pairs
from lmforge.data._minhash import lsh_params

BASE = (
    "The flight from Denver was delayed for three hours and nobody at the gate could tell us why, "
    "so we missed our connection in Chicago and had to sleep at the airport."
)
ONE_WORD_CHANGED = BASE.replace("three", "seven")
UNRELATED = "Lovely crew on this morning's shuttle, the coffee was hot and we landed twenty minutes early."

VOCAB = (
    "flight crew seat bag gate delay refund ticket agent service airport plane lounge meal snack pilot "
    "weather storm cancel board check luggage phone email wait hour minute morning evening night travel "
    "trip late early great awful rude kind helpful slow fast clean dirty cold warm loud quiet small big"
).split()


def jaccard(a: str, b: str, n: int = 5) -> float:
    sa = {a[i : i + n] for i in range(len(a) - n + 1)}
    sb = {b[i : i + n] for i in range(len(b) - n + 1)}
    return len(sa & sb) / len(sa | sb)


def random_texts(n: int, seed: int = 0, words: int = 14) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(VOCAB, size=words)) + f" {i}" for i in range(n)]


def test_signatures_are_deterministic_and_seeded():
    texts = [BASE, UNRELATED, "short", ""]
    a = minhash_signatures(texts)
    assert a.shape == (4, 128) and a.dtype == np.uint32
    assert np.array_equal(a, minhash_signatures(texts))
    assert not np.array_equal(a, minhash_signatures(texts, seed=1))
    assert (a[3] == 0xFFFFFFFF).all()  # empty text: no shingles


def test_signature_of_a_text_does_not_depend_on_its_neighbours():
    alone = minhash_signatures([BASE])
    among = minhash_signatures([UNRELATED, BASE, "x" * 2000])
    assert np.array_equal(alone[0], among[1])


def test_estimate_tracks_true_jaccard():
    sig = minhash_signatures([BASE, ONE_WORD_CHANGED, UNRELATED])
    true = jaccard(BASE, ONE_WORD_CHANGED)
    assert abs((sig[0] == sig[1]).mean() - true) < 0.15
    assert (sig[0] == sig[2]).mean() < 0.2


def test_lsh_params_fit_in_the_signature():
    for threshold in (0.5, 0.8, 0.9, 0.99):
        bands, rows = lsh_params(threshold)
        assert bands * rows <= 128
    assert lsh_params(0.9)[1] > lsh_params(0.5)[1]  # stricter threshold, longer bands


def test_near_pairs_with_split_only_cross():
    sig = minhash_signatures([BASE, ONE_WORD_CHANGED, BASE.upper().lower(), UNRELATED])
    lo, hi, sim = near_duplicate_pairs(sig, 0.8, split=2)
    assert all(i < 2 <= j for i, j in zip(lo, hi, strict=True))
    assert 2 in hi and 3 not in hi
    assert (sim >= 0.8).all()


def test_exact_duplicates_casefolded_first_kept():
    texts = ["Hello World", "other text here", "hello world", "HELLO WORLD"]
    dups = find_duplicates(texts, ["a", "b", "a", "a"], threshold=1.0)
    assert dups.keep.tolist() == [True, True, False, False]
    assert dups.representative.tolist() == [0, 1, 0, 0]
    assert dups.exact == 2 and dups.near == 0
    assert dups.signatures is None  # threshold 1.0: exact only


def test_near_duplicate_caught_unrelated_not():
    assert jaccard(BASE, ONE_WORD_CHANGED) > 0.85  # the premise of the test
    texts = [BASE, UNRELATED, ONE_WORD_CHANGED, *random_texts(50)]
    dups = find_duplicates(texts, ["neg", "pos", "neg", *["x"] * 50], threshold=0.8)
    assert dups.keep[0] and dups.keep[1] and not dups.keep[2]
    assert dups.representative[2] == 0
    assert dups.near == 1 and dups.exact == 0
    assert dups.keep[3:].all()  # random sentences are not near each other
    assert dups.conflicting_groups == 0


def test_no_chaining_through_a_dropped_row():
    # b is near a and c is near b, but c is far from a: b is dropped (near a), and c must
    # survive because the only row it is near was dropped.
    a = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa"
    b = a.replace("alpha bravo", "zulu yankee")
    c = b.replace("oscar papa", "xray whiskey")
    assert jaccard(a, b) > 0.78 and jaccard(b, c) > 0.78 and jaccard(a, c) < 0.63  # the premise
    dups = find_duplicates([a, b, c], ["x", "x", "x"], threshold=0.7)
    assert dups.keep.tolist() == [True, False, True]
    assert dups.representative.tolist() == [0, 0, 2]


def test_conflicting_labels_reported():
    texts = ["Thank you!", "thank you!", "THANK YOU!", BASE, ONE_WORD_CHANGED, UNRELATED, "fine"]
    labels = ["positive", "neutral", "positive", "neg", "neu", "pos", "neg"]
    dups = find_duplicates(texts, labels, threshold=0.8)
    assert dups.conflicting_groups == 2
    first, second = dups.conflict_examples
    assert first["kept"] == {"text": "Thank you!", "label": "positive", "majority_label": "positive"}
    assert first["labels"] == {"neutral": 1, "positive": 2}
    assert first["size"] == 3
    assert {d["kind"] for d in first["duplicates"]} == {"exact"}
    assert second["duplicates"] == [{"text": ONE_WORD_CHANGED, "label": "neu", "kind": "near"}]


def test_conflicting_group_takes_its_majority_label():
    texts = ["Thank you!", "thank you!", "THANK YOU!", "Thank you!!", "tie break", "TIE BREAK"]
    labels = ["neutral", "positive", "positive", "positive", "a", "b"]
    dups = find_duplicates(texts, labels, threshold=0.8)
    assert dups.majority == {0: "positive", 4: "a"}  # a tie keeps the kept row's own label


def test_minhash_candidates_are_confirmed_by_exact_jaccard():
    # Two retweets sharing most of their text: MinHash may estimate them above 0.9, but their
    # exact similarity is below it, so neither is dropped at 0.9 and both are at 0.6.
    a = "@USAirways: @AnnetteNaif We appreciate the #shoutout for Roberto. DM confirmation code so we can forward ur kind words. Confirmation code?"
    b = "@USAirways: @AnnetteNaif We appreciate the #shoutout for Roberto. DM your confirmation code so we can forward your kind words. sent"
    assert 0.6 < jaccard(a.casefold(), b.casefold()) < 0.9
    assert find_duplicates([a, b], ["x", "y"], threshold=0.9).keep.tolist() == [True, True]
    assert find_duplicates([a, b], ["x", "y"], threshold=0.6).keep.tolist() == [True, False]


def test_conflict_examples_capped_at_20():
    texts, labels = [], []
    for t in random_texts(30):
        texts += [t, t.upper()]
        labels += ["a", "b"]
    dups = find_duplicates(texts, labels, threshold=1.0)
    assert dups.conflicting_groups == 30
    assert len(dups.conflict_examples) == 20


def test_leakage_exact_and_near():
    train = [BASE, *random_texts(20, seed=1)]
    other = [BASE.upper(), ONE_WORD_CHANGED, UNRELATED, *random_texts(5, seed=2)]
    leak = find_leakage(train, other, threshold=0.8)
    assert leak.exact.tolist()[:3] == [True, False, False]
    assert leak.near.tolist()[:3] == [False, True, False]
    assert not leak.exact[3:].any() and not leak.near[3:].any()


def test_leakage_exact_only_at_threshold_one():
    leak = find_leakage([BASE], [ONE_WORD_CHANGED, BASE], threshold=1.0)
    assert leak.exact.tolist() == [False, True]
    assert not leak.near.any()


def test_dedupe_finds_every_near_copy_in_a_tweet_sized_corpus():
    # How fast this is (~1 s on 2 cores): bench/text_speed.py.
    texts = random_texts(15_000, seed=3, words=16)
    texts += [t + "!" for t in texts[:500]]  # near duplicates
    assert min(jaccard(t, t + "!") for t in texts[:500]) >= 0.9  # the premise: each copy is within the threshold
    dups = find_duplicates(texts, ["x"] * len(texts), threshold=0.9)
    assert (dups.exact, dups.near) == (0, 500)
    assert dups.keep.tolist() == [True] * 15_000 + [False] * 500  # the originals kept, every copy dropped
    assert dups.representative[15_000:].tolist() == list(range(500))  # each copy points at its own original


def test_signatures_do_not_depend_on_batching(monkeypatch):
    import lmforge.data._minhash as minhash

    texts = [f"{BASE} {i}" * (i % 7 + 1) for i in range(60)] + ["", "abc"]
    whole = minhash_signatures(texts)
    monkeypatch.setattr(minhash, "_BATCH_CHARS", 500)
    assert np.array_equal(whole, minhash_signatures(texts))


def test_chinese_without_spaces_near_and_exact_duplicates():
    # Character shingles need no spaces: one added character in a 30-character review is a near copy.
    base = "这家餐厅的菜很好吃，服务也很好，环境干净整洁，下次还会再来光顾"
    near = base + "！"
    other = "物流太慢了，包装也破了，客服态度很差，不推荐购买这家店的东西"
    assert jaccard(base, near) > 0.9 and jaccard(base, other) < 0.1
    dups = find_duplicates([base, other, near, base], ["pos", "neg", "pos", "pos"], threshold=0.9)
    assert dups.keep.tolist() == [True, True, False, False]
    assert (dups.exact, dups.near) == (1, 1)
    leak = find_leakage([base, other], [near, "完全不同的一句话，讲的是别的事情，和上面无关"], threshold=0.9)
    assert leak.near.tolist() == [True, False] and leak.exact.tolist() == [False, False]
