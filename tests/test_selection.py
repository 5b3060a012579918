import pytest

from painting_ml.exceptions import SelectionError
from painting_ml.selection import choose_top


def test_top_n_equalised_to_smallest():
    sel = choose_top({"a": 50, "b": 20, "c": 35, "d": 5}, 2, min_per_artist=3)
    assert sel.artists == ["a", "c"] and sel.per_artist == 35


def test_ties_broken_by_name_and_minimum_respected():
    sel = choose_top({"b": 10, "a": 10, "c": 10, "z": 2}, 2, min_per_artist=3)
    assert sel.artists == ["a", "b"] and sel.per_artist == 10


def test_impossible_request_names_what_exists():
    with pytest.raises(SelectionError) as err:
        choose_top({"Monet": 9, "Degas": 2}, 3, min_per_artist=3)
    msg = str(err.value)
    assert "asked for 3 artists" in msg and "only 1 qualify: Monet (9)" in msg and "lower n_artists" in msg
