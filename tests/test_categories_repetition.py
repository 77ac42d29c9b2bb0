"""Repetition labeler: repeated n-grams within a window, first occurrences not counted, copy distance."""
import numpy as np

from tokengap.analysis.categories import DocView, REGISTRY
from tokengap.analysis.categories.repetition import ngram_ids, repeats


def rep(pieces, context_len=None, **params):
    return REGISTRY["repetition"](DocView.from_pieces(pieces, context_len=context_len), **params)


def test_hand_example():
    #        0    1    2    3    4    5    6
    toks = ["a", "b", "c", "a", "b", "c", "a"]
    out = rep(toks, ns=(1, 2, 4), copy_n=2)
    assert out["rep_1"].tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert out["rep_2"].tolist() == [0, 0, 0, 0, 1, 1, 1]  # "a b" completes at 4; "c a" at 6 (seen at 2-3)
    assert out["rep_4"].tolist() == [0, 0, 0, 0, 0, 0, 1]  # "a b c a" ends at 3, again at 6
    assert out["copy_dist"].tolist() == [0, 0, 0, 0, 3, 3, 3]


def test_copy_distance_is_to_the_most_recent_occurrence():
    out = rep(["x", "y", "x", "z", "x"], ns=(1,), copy_n=1)
    assert out["copy_dist"].tolist() == [0, 0, 2, 0, 2]


def test_windows_do_not_see_each_other():
    # window of 3: [a b c] [a b c]: nothing repeats across the boundary
    out = rep(["a", "b", "c", "a", "b", "c"], context_len=3, ns=(1, 2))
    assert not out["rep_1"].any() and not out["rep_2"].any()
    # and an n-gram may not reach back before its window's start
    out = rep(["a", "b", "a", "b", "x", "a"], context_len=3, ns=(2,))
    assert out["rep_2"].tolist() == [0, 0, 0, 0, 0, 0]


def test_matches_brute_force_on_random_tokens():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 200))
        toks = rng.integers(0, 4, n)
        pos, win = np.arange(n) % 37, np.arange(n) // 37
        for k in (1, 2, 3, 4, 5, 8):
            got, dist = repeats(ngram_ids(toks, pos, k), win)
            for t in range(n):
                ok = pos[t] >= k - 1
                prev = [s for s in range(t) if win[s] == win[t] and pos[s] >= k - 1
                        and ok and np.array_equal(toks[s - k + 1:s + 1], toks[t - k + 1:t + 1])]
                assert got[t] == bool(prev), (trial, k, t)
                assert dist[t] == (t - prev[-1] if prev else 0)
