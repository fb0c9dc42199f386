"""tidy: each fix applies where its pattern matches (the substring guards in front of them must not hide one)."""

from __future__ import annotations

import pytest

from speakrl.pipeline.stages.phrasing import tidy

CASES = [
    ("I booked a 8-hour shift", "I booked an 8-hour shift"),
    ("a 18-month lease and A 11 am slot", "An 18-month lease and An 11 am slot"),
    ("a 1-hour class", "A 1-hour class"),  # "a 1" is not "an 1"
    ("for 1 nights", "For 1 night"),
    ("which one works", "Which one works"),
    ("a table for one people", "A table for one person"),
    ("1 people", "1 person"),
    ("see you on today, or on this Friday", "See you today, or this Friday"),
    ("On tomorrow then", "Tomorrow then"),
    ("a confirmation on the 5th", "A confirmation on the 5th"),
    ("done,. thanks;! ok:?", "Done. Thanks. Ok."),
    ("in hyper class class , ok", "In hyper class, ok"),
    ("the Hotel hotel Marina", "The hotel Marina"),
    ("the theory holds", "The theory holds"),
    ("x1ab ab", "X1ab ab"),  # not two whole words
    ("at C C Beauty Salon", "At C C Beauty Salon"),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_tidy(text, expected):
    assert tidy(text) == expected
