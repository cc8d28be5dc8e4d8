"""The benchmark's ranking metrics on results small enough to score by hand."""

import math

import pytest

from bench import ranking


def test_hit_counts_only_the_first_depth_results():
    assert ranking.hit(["a", "b", "c"], {"c"}, depth=3) == 1.0
    assert ranking.hit(["a", "b", "c"], {"c"}, depth=2) == 0.0


def test_reciprocal_rank_is_of_the_first_relevant_result():
    assert ranking.reciprocal_rank(["a", "x", "y", "x"], {"x", "y"}, depth=10) == 0.5
    assert ranking.reciprocal_rank(["a", "b"], {"x"}, depth=10) == 0.0


def test_ndcg_counts_each_relevant_page_once():
    # Two chunks of page x at ranks 1 and 2 earn what one does; page y at rank 3 adds its own gain.
    repeated = ranking.ndcg(["x", "x", "y"], {"x", "y"}, depth=10)
    ideal = 1 + 1 / math.log2(3)
    assert repeated == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert ranking.ndcg(["x", "y"], {"x", "y"}, depth=10) == pytest.approx(1.0)
    assert ranking.ndcg(["x", "x"], {"x"}, depth=10) == pytest.approx(1.0)


def test_ndcg_ideal_is_capped_at_depth():
    assert ranking.ndcg(["a", "b"], {"a", "b", "c"}, depth=2) == pytest.approx(1.0)


def test_distinct_keeps_first_appearances_in_order():
    assert ranking.distinct(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
