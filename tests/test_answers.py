"""Answer normalisation, exact match, token F1, answer extraction and the LLM judge."""

from __future__ import annotations

import pytest

from sale.envs.answers import (
    exact_match,
    extract_short_answer,
    grade_answer,
    normalize_answer,
    parse_yes_no,
    token_f1,
)


def test_normalize_drops_case_punctuation_articles_and_spacing():
    assert normalize_answer("The  Eiffel Tower, in Paris.") == "eiffel tower in paris"
    assert normalize_answer("An apple a day") == "apple day"
    # Articles only go as whole words; punctuation inside words goes without a space.
    assert normalize_answer("Theatre of Anthem") == "theatre of anthem"
    assert normalize_answer("Jay-Z") == "jayz"


def test_exact_match_over_answer_and_aliases():
    assert exact_match("the eiffel tower", ["Eiffel Tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert exact_match("Tour Eiffel!", ["Eiffel Tower", "Tour Eiffel"]) == 1.0
    assert exact_match("Paris", "Paris") == 1.0  # one gold as a plain string
    assert exact_match("Paris", []) == 0.0


@pytest.mark.parametrize(
    ("prediction", "golds", "expected"),
    [
        # pred tokens: eiffel tower in paris (4); gold: eiffel tower (2); overlap 2
        # P = 2/4, R = 2/2, F1 = 2 * 0.5 * 1 / 1.5 = 2/3
        ("the Eiffel tower in Paris", ["Eiffel Tower"], 2 / 3),
        # P = 2/3, R = 1, F1 = 0.8
        ("Steve Hillage band", ["Steve Hillage"], 0.8),
        # duplicates count once per gold occurrence: overlap 1, P = 1/2, R = 1
        ("Paris Paris", ["Paris"], 2 / 3),
        # P = 1, R = 1/2 -> 2/3; the alias "Orion" gives 1.0 and wins
        ("Orion", ["Orion Pictures", "Orion"], 1.0),
        ("Orion", ["Orion Pictures"], 2 / 3),
        ("Mike Medavoy", ["Orion Pictures"], 0.0),
        ("", ["Orion Pictures"], 0.0),
        ("Orion", [], 0.0),
    ],
)
def test_token_f1_hand_computed(prediction, golds, expected):
    assert token_f1(prediction, golds) == pytest.approx(expected)


def test_grade_answer_passes_on_exact_match_and_scores_f1():
    grade = grade_answer("Answer: the Eiffel Tower.", ["Tour Eiffel", "Eiffel Tower"])
    assert grade.passed is True
    assert grade.score == 1.0
    assert grade.detail == {
        "em": 1.0, "f1": 1.0, "matched": "Eiffel Tower", "prediction": "the Eiffel Tower"
    }

    partial = grade_answer("the Eiffel tower in Paris", ["Eiffel Tower"])
    assert partial.passed is False
    assert partial.score == pytest.approx(2 / 3)
    assert partial.detail["em"] == 0.0
    assert partial.detail["matched"] == "Eiffel Tower"

    miss = grade_answer("London", ["Eiffel Tower"])
    assert (miss.passed, miss.score, miss.detail["matched"]) == (False, 0.0, None)


def test_grade_answer_can_skip_extraction():
    # Without extraction the "Answer:" label counts as a token and breaks exact match.
    grade = grade_answer("Answer: Paris", ["Paris"], extract=False)
    assert grade.passed is False
    assert grade.score == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Paris", "Paris"),
        ("Answer: Paris.", "Paris"),
        ("answer - 1912", "1912"),
        ("Final answer: Steve Hillage", "Steve Hillage"),
        ('**Answer:** "Eiffel Tower"', "Eiffel Tower"),
        ("The answer is Mike Medavoy.", "Mike Medavoy"),
        ("\u201cTamaulipas\u201d", "Tamaulipas"),
        ("'yes'", "yes"),
        ("`Cologne`", "Cologne"),
        ("First I searched.\nThen I read.\nAnswer: Cologne", "Cologne"),
        ("Cologne\n\nIt is the headquarters city.", "Cologne"),
        ("<think>who is it? maybe Bonn</think>\nCologne.", "Cologne"),
        ("Washington, D.C.", "Washington, D.C"),
        ("Wait...", "Wait..."),
        ("", ""),
        ("   \n ", ""),
    ],
)
def test_extract_short_answer(reply, expected):
    assert extract_short_answer(reply) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("Yes.", True),
        ("No, the answers differ.", False),
        ("**No**", False),
        ("<think>The gold says no such thing... yes</think> no", False),
        ("The prediction is correct: yes", True),
        ("maybe", None),
        ("It could be yes or no", None),
        ("", None),
    ],
)
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected
