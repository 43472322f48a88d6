"""A judge answer without a score drops R_judge for its whole group, so group-mates share one scale."""

import pytest

from trainer.actors.scoring import drop_judge_per_group


def test_a_missing_judge_score_drops_the_term_for_the_whole_group_only():
    answers = [0.5, None, 0.75, 1.0, 0.25, 0.5, 0.75, 1.0]  # two images, G = 4; image 0 has one unscored answer
    assert drop_judge_per_group(answers, 4) == [None] * 4 + [0.25, 0.5, 0.75, 1.0]
    assert drop_judge_per_group(answers, 2) == [None, None, 0.75, 1.0, 0.25, 0.5, 0.75, 1.0]
    assert drop_judge_per_group([0.5, 0.75], 2) == [0.5, 0.75]


def test_answers_that_do_not_split_into_groups_are_refused():
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        drop_judge_per_group([0.5] * 6, 4)
