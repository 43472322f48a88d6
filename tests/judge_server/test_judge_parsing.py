"""The pure parsing of judge answers: <Assessment> XML and digit logprobs."""

from __future__ import annotations

import math

import pytest

from judge_server.backend import BackendError
from judge_server.completion import Choice
from judge_server.judge import first_token_logprobs
from judge_server.parsing import degradation_to_task, expected_digit_score, parse_assessment

WELL_FORMED = """The input shows dense diagonal streaks typical of rain.
<Assessment>
<DegradationType>rain</DegradationType>
<Analysis>Most streaks are gone and edges stay sharp; a few faint streaks remain on the sky,
and the colours are slightly duller than in the ground truth.</Analysis>
<Score>4</Score>
</Assessment>"""


def test_well_formed_assessment_with_leading_text():
    parsed = parse_assessment(WELL_FORMED)
    assert parsed.error is None
    assert parsed.score == 4
    assert parsed.degradation_type == "rain"
    assert parsed.degradation_task == "derain"
    assert parsed.analysis.startswith("Most streaks are gone")


def test_tags_are_case_insensitive_and_score_may_be_padded():
    text = "<assessment><degradationtype>Low-light</degradationtype><analysis>ok</analysis><score> 2 </score></assessment>"
    parsed = parse_assessment(text)
    assert (parsed.score, parsed.degradation_task) == (2, "lowlight")


def test_trailing_text_after_the_block_is_ignored():
    assert parse_assessment(WELL_FORMED + "\nI hope this helps! Score 1.").score == 4


def test_missing_score():
    parsed = parse_assessment("<Assessment><DegradationType>haze</DegradationType><Analysis>x</Analysis></Assessment>")
    assert parsed.score is None
    assert "no <Score>" in parsed.error
    assert parsed.degradation_task == "dehaze"  # the other fields survive for the log


@pytest.mark.parametrize("bad", ["0", "6", "10", "4.5", "four", "-3", ""])
def test_score_out_of_range_or_not_an_integer(bad):
    parsed = parse_assessment(f"<Assessment><Score>{bad}</Score></Assessment>")
    assert parsed.score is None
    assert "not an integer from 1 to 5" in parsed.error


@pytest.mark.parametrize(
    "text, reason",
    [
        ("<Assessment><Score>2</Score><Analysis>better</Analysis><Score>5</Score></Assessment>", "2 <Score> elements"),
        ("<Assessment><Score>3</Score></Assessment>\n<Assessment><Score>4</Score></Assessment>", "2 <Assessment> blocks"),
        ("<Assessment>\n<DegradationType>noise</DegradationType>\n<Analysis>The restored image", "not closed"),
    ],
    ids=["two-scores", "two-blocks", "truncated"],
)
def test_ambiguous_or_truncated_answers_give_no_score(text, reason):
    parsed = parse_assessment(text)
    assert parsed.score is None
    assert reason in parsed.error


@pytest.mark.parametrize("text", ["", "44444444", "Score: 4", "<Score>4</Score>"])
def test_no_block_at_all(text):
    parsed = parse_assessment(text)
    assert parsed.score is None
    assert parsed.error == "no <Assessment> block in the answer"


@pytest.mark.parametrize(
    "name, task",
    [("Gaussian noise", "denoise"), ("rain streaks", "derain"), ("fog / haze", "dehaze"), ("motion blur", "deblur"),
     ("underexposure (dark)", "lowlight"), ("JPEG blocking", None), ("noise and blur", None)],
)
def test_degradation_names_map_to_tasks_only_when_unambiguous(name, task):
    assert degradation_to_task(name) == task


def test_expected_score_from_digit_logprobs():
    probs = {"1": 0.05, "2": 0.1, "3": 0.2, "4": 0.4, "5": 0.15, "The": 0.1}
    result = expected_digit_score({t: math.log(p) for t, p in probs.items()}, min_mass=0.5)
    assert result.error is None
    assert result.mass == pytest.approx(0.9)
    assert result.probs["4"] == pytest.approx(0.4 / 0.9)
    assert sum(result.probs.values()) == pytest.approx(1.0)
    assert result.score == pytest.approx((0.05 + 0.2 + 0.6 + 1.6 + 0.75) / 0.9)


def test_tokens_of_the_same_digit_are_pooled_and_missing_digits_count_zero():
    logprobs = {"3": math.log(0.3), " 3": math.log(0.2), "5\n": math.log(0.5), "-inf": float("-inf")}
    result = expected_digit_score(logprobs, min_mass=0.0)
    assert result.probs == pytest.approx({"1": 0.0, "2": 0.0, "3": 0.5, "4": 0.0, "5": 0.5})
    assert result.score == pytest.approx(4.0)


def test_low_digit_mass_gives_no_score():
    logprobs = {"4": math.log(0.2), "hello": math.log(0.7)}
    result = expected_digit_score(logprobs, min_mass=0.5)
    assert result.score is None
    assert result.mass == pytest.approx(0.2)
    assert "below the threshold 0.5" in result.error


def test_no_digits_gives_no_score_even_without_threshold():
    result = expected_digit_score({"hello": -0.1, "6": -2.0, "0": -3.0, "12": -4.0}, min_mass=0.0)
    assert result.score is None and result.mass == 0.0
    assert "none of the digits" in result.error


def test_first_token_logprobs_merges_the_sampled_token():
    choice = {"logprobs": {"content": [{"token": "2", "logprob": -3.0,
                                        "top_logprobs": [{"token": "4", "logprob": -0.5}, {"token": "x", "logprob": -1.0}]}]}}
    assert first_token_logprobs(Choice.model_validate({"message": {}, **choice})) == {"4": -0.5, "x": -1.0, "2": -3.0}


@pytest.mark.parametrize("choice", [{}, {"logprobs": None}, {"logprobs": {"content": []}}])
def test_missing_logprobs_is_a_backend_error(choice):
    with pytest.raises(BackendError, match="without the logprobs"):
        first_token_logprobs(Choice.model_validate({"message": {}, **choice}))
