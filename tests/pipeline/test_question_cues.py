"""How human clarification questions name the slots they ask about (SGD's wording): `question_targets` cues."""

import pytest

from speakrl.pipeline.checks import question_targets
from speakrl.schemas.catalog import SlotSpec

RESTAURANT = [SlotSpec(name="restaurant_name", description="Name of the restaurant"),
              SlotSpec(name="city", description="City in which the restaurant is located"),
              SlotSpec(name="cuisine", description="Cuisine of food served in the restaurant", values=["Italian", "Indian", "Chinese"]),
              SlotSpec(name="party_size", description="Party size", type="integer", values=["2", "4"]),
              SlotSpec(name="date", description="Date", values=["2019-03-02"])]
EVENTS = [SlotSpec(name="event_name", description="Name of match or artist for event"),
          SlotSpec(name="event_type", description="Type of event", enum=["Music", "Sports"]),
          SlotSpec(name="city", description="City where the event is taking place")]
MOVIES = [SlotSpec(name="title", description="Title of the movie"), SlotSpec(name="genre", description="Genre of the movie")]


@pytest.mark.parametrize("question, slots, asked", [
    ("What kind of food are you looking for?", RESTAURANT, {"cuisine"}),
    ("Which area are you interested in?", RESTAURANT, {"city"}),
    ("What location do you want?", RESTAURANT, {"city"}),
    ("Is there a metropolis you prefer me to search in?", RESTAURANT, {"city"}),
    ("Which movie do you want to watch?", MOVIES, {"title"}),
    ("Are you looking for Italian, Indian or something else?", RESTAURANT, {"cuisine"}),  # offered values
    # "Type of event" is asked as "what kind of event": event_type, not event_name
    ("What kind of events do you like?", EVENTS, {"event_type"}),
    # "the event" is what is talked about, named alike by event_name and event_type: the question asks the city
    ("Do you have a specific city that you are looking for the event in?", EVENTS, {"city"}),
])
def test_human_wordings_name_the_asked_slot(question, slots, asked):
    assert question_targets(question, slots) == asked


def test_a_phrase_shared_by_slots_counts_when_nothing_else_is_asked():
    assert question_targets("Which event?", EVENTS) == {"event_name", "event_type"}


def test_numbers_and_dates_among_known_values_are_no_cue():
    assert question_targets("Is that for 2 on 2019-03-02, right?", RESTAURANT[:4]) == set()
    assert question_targets("Anything else?", RESTAURANT) == set()
