import pytest

from painting_ml.core.errors import SelectionError
from painting_ml.data.selection import choose_top

pytestmark = pytest.mark.unit


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


from painting_ml.core.config import RunConfig  # noqa: E402
from painting_ml.data.selection import choose, choose_balanced, choose_capped, choose_listed  # noqa: E402

COUNTS = {"Monet": 120, "Degas": 60, "Renoir": 58, "Cézanne": 55, "Manet": 20, "Sisley": 3}


def test_balanced_picks_the_most_similar_counts():
    sel = choose_balanced(COUNTS, 3, min_per_artist=4)
    assert sel.artists == ["Cézanne", "Degas", "Renoir"] and sel.per_artist == 55
    assert set(sel.take.values()) == {55}


def test_capped_keeps_imbalance_under_the_cap():
    sel = choose_capped(COUNTS, 3, min_per_artist=4, cap=59)
    assert sel.take == {"Monet": 59, "Degas": 59, "Renoir": 58}


def test_listed_with_did_you_mean():
    assert choose_listed(COUNTS, ("Manet", "Monet"), 4).take == {"Manet": 20, "Monet": 20}
    with pytest.raises(SelectionError) as err:
        choose_listed(COUNTS, ("Monnet", "Sisley"), 4)
    msg = str(err.value)
    assert "'Monnet' has no usable paintings (did you mean 'Monet'" in msg
    assert "'Sisley' has only 3 usable paintings" in msg


def test_choose_dispatches_on_config():
    cfg = RunConfig(data_dir="/d", artists=("Degas", "Renoir"))
    assert cfg.strategy == "list" and cfg.n_artists == 2
    assert choose(COUNTS, cfg).artists == ["Degas", "Renoir"]
    capped = choose(COUNTS, RunConfig(data_dir="/d", n_artists=2, strategy="capped", cap=70))
    assert capped.take == {"Monet": 70, "Degas": 60}
    with pytest.raises(SelectionError, match="no usable paintings"):
        choose({}, cfg)
