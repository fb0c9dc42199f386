"""Grounding of dates, times, years and yes/no slots as people say them; confirmations, offers, aliases and informs;
question_targets: the slots a question asks about, no more (shared by validator, rewards, eval, user simulator)."""

import json
from datetime import date

import pytest

from speakrl.pipeline.checks import mentioned, question_targets, reference_date, ungrounded_args
from speakrl.pipeline.runner import generate
from speakrl.pipeline.stages import validate
from speakrl.schemas import Dialogue, FunctionCall, Message, TurnLabel
from speakrl.schemas.catalog import SlotSpec
from speakrl.schemas.config import RunConfig
from speakrl.schemas.dialogue import Inform, Provenance, ToolCall, ToolSpec
from speakrl.training.data import decision_rows, load_dialogues
from speakrl.training.rewards import slot_specs

FRIDAY = date(2019, 3, 1)


@pytest.mark.parametrize("value, text, today", [
    ("2019-03-05", "something on the 5th of march", None),
    ("2019-03-05", "on March 5", None),
    ("2019-03-14", "the 14th of this month please", FRIDAY),
    ("2019-03-02", "tomorrow works", FRIDAY),
    ("2019-03-03", "the day after tomorrow", FRIDAY),
    ("2019-03-08", "next friday", FRIDAY),
    ("2019-03-05", "tuesday next week", FRIDAY),
    ("2019-03-02", "this saturday", FRIDAY),
    ("2019-03-01", "later today", FRIDAY),
    ("19:00", "at 7 pm", None),
    ("19:30", "half past 7 in the evening", None),
    ("17:15", "quarter past 5 in the evening", None),
    ("19:45", "quarter to 8", None),
    ("11:00", "eleven in the morning", None),
    ("12:00", "around noon", None),
    ("13:30", "afternoon 1:30", None),
    (2016, "maybe from '16?", None),
    (2017, "something from two years back", FRIDAY),
    ("Seattle", "Basketball events, in Seattle: can you search?", None),  # a colon ends a phrase
    ("family room", "for 2 nights and 4 family rooms", None),  # a kind in the plural after its count
    ("suite", "Two suites, please.", None),
    ("party", "3 parties.", None),
])
def test_values_said_as_people_say_them(value, text, today):
    assert mentioned(value, [text], today)


@pytest.mark.parametrize("value, text, today", [
    ("2019-03-15", "on the 5th", None),  # another day
    ("2019-04-05", "the 5th of march", None),  # another month
    ("2019-03-08", "the 5th of this month", FRIDAY),
    ("2019-03-02", "tomorrow", None),  # no date to count from
    ("2019-03-09", "next friday", FRIDAY),
    ("19:00", "7 in the morning", None),
    ("07:00", "7 pm", None),
    ("19:00", "for 7 people", None),  # a bare number is a count, not a time
    ("19:30", "at 7", None),
    (2015, "something from two years back", FRIDAY),
    (7, "at 7:30", None),  # a colon followed by a digit continues a time
    (4, "rated 4.5", None),
    ("suite", "at Bayshore Suites", None),  # a plural with no count before it is another thing
    ("family room", "family rooms are nice", None),
    ("family room", "4 family roomsets", None),
])
def test_wrong_or_unsaid_values_are_not_mentioned(value, text, today):
    assert not mentioned(value, [text], today)


def test_a_whole_phrase_is_found_as_the_regex_that_defines_it_finds_it():
    """`_is_phrase_in` (no regex, for speed) against the pattern it replaced, on random texts built from the
    characters its boundaries turn on."""
    import random
    import re

    from speakrl.pipeline.checks import _is_phrase_in

    rng = random.Random(0)
    alphabet = ["a", "b", "1", "2", " ", ".", ":", "-", "_", "é", ","]
    checked = found = 0
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        phrase = "".join(rng.choice(alphabet[:4] + [" "]) for _ in range(rng.randint(1, 3))).strip() or "a"
        pattern = re.compile(r"(?<![\w.:-])" + re.escape(phrase) + r"(?!\w|[:.]\d)")
        expected = pattern.search(text) is not None
        assert _is_phrase_in(phrase, text) == expected, (phrase, text, expected)
        checked, found = checked + 1, found + expected
    assert found > 500 and checked - found > 500  # both answers were tried often


def test_yes_no_slots_are_named_with_or_without_their_verb():
    assert ungrounded_args({"has_live_music": True}, ["a place with live music"], {}) == []
    assert ungrounded_args({"serves_alcohol": True}, ["somewhere that serves alcohol"], {}) == []
    assert ungrounded_args({"has_live_music": True}, ["a quiet place"], {}) == ["has_live_music"]


def test_reference_date_comes_from_the_system_message():
    assert reference_date("Be helpful. Today is Friday, 2019-03-01.") == FRIDAY
    assert reference_date("Be helpful.") is None
    assert ungrounded_args({"date": "2019-03-02"}, ["tomorrow"], {}) == ["date"]
    assert ungrounded_args({"date": "2019-03-02"}, ["tomorrow"], {}, today=FRIDAY) == []


def test_question_cues_match_plurals_and_how_many():
    slots = [SlotSpec(name="event_type", description=""), SlotSpec(name="number_of_seats", description="")]
    assert question_targets("What kind of events do you like?", slots) == {"event_type"}
    assert question_targets("How many do you want?", slots) == {"number_of_seats"}


def _dialogue(assistant_text: str, kind: str | None, aliases: dict | None = None, user: str = "Book it.") -> Dialogue:
    spec = ToolSpec.model_validate({"type": "function", "function": {"name": "reserve", "description": "Reserve", "parameters": {
        "type": "object", "properties": {"restaurant_name": {"type": "string", "description": "Name"}},
        "required": ["restaurant_name"], "additionalProperties": False}}})
    call = FunctionCall(name="reserve", arguments='{"restaurant_name": "Golden Wok"}')
    act = "clarify" if kind == "confirm" else "answer"
    return Dialogue(
        id="d", scenario_id="s", domain="restaurants", tools=[spec],
        messages=[Message(role="system", content="Help."), Message(role="user", content="Find me a place to eat."),
                  Message(role="assistant", content=assistant_text), Message(role="user", content=user),
                  Message(role="assistant", tool_calls=[ToolCall(id="c0", function=call)]),
                  Message(role="tool", tool_call_id="c0", name="reserve", content='{"status": "confirmed"}'),
                  Message(role="assistant", content="Done.")],
        labels=[TurnLabel(message_index=2, act=act, kind=kind), TurnLabel(message_index=4, act="tool_call"),
                TurnLabel(message_index=6, act="answer")],
        gold_calls=[call], goal={"restaurant_name": "Golden Wok"}, ambiguities=[], needs_clarification=False,
        outcome="completed", provenance=Provenance(backend="sgd", seed=0), aliases=aliases or {},
    )


def test_values_put_to_the_user_in_a_confirmation_or_offer_are_grounded():
    assert validate.grounded(_dialogue("Please confirm: a table at Golden Wok?", "confirm"), None) is None
    assert validate.grounded(_dialogue("Golden Wok is a nice place.", "offer"), None) is None
    # an ordinary assistant turn does not ground what the assistant said: it could be the assistant's invention
    assert validate.grounded(_dialogue("I will book Golden Wok.", None), None).startswith("ungrounded_value")


def test_aliases_ground_a_value_only_where_the_user_said_them():
    said = _dialogue("Which one?", None, {"Golden Wok": ["the Wok"]}, user="The Wok, please.")
    assert validate.grounded(said, None) is None
    unsaid = _dialogue("Which one?", None, {"Golden Wok": ["the Wok"]}, user="That one.")
    assert validate.grounded(unsaid, None).startswith("ungrounded_value")


def _search(user: str, informs: list[Inform], args: dict | None = None) -> Dialogue:
    """A restaurant search after one user turn (message 1) and a question (2) answered by `user` (3)."""
    args = args or {"price_range": "moderate"}
    spec = ToolSpec.model_validate({"type": "function", "function": {"name": "find", "description": "Find", "parameters": {
        "type": "object", "properties": {"price_range": {"type": "string", "enum": ["cheap", "moderate", "pricey"]},
                                         "serves_alcohol": {"type": "boolean"}},
        "required": [], "additionalProperties": False}}})
    call = FunctionCall(name="find", arguments=json.dumps(args))
    return Dialogue(
        id="d", scenario_id="s", domain="restaurants", tools=[spec],
        messages=[Message(role="system", content="Help."), Message(role="user", content="Find me a place to eat."),
                  Message(role="assistant", content="Anything in particular?"), Message(role="user", content=user),
                  Message(role="assistant", tool_calls=[ToolCall(id="c0", function=call)]),
                  Message(role="tool", tool_call_id="c0", name="find", content='{"count": 0, "results": []}'),
                  Message(role="user", content="Thanks."), Message(role="assistant", content="None found.")],
        labels=[TurnLabel(message_index=2, act="answer"), TurnLabel(message_index=4, act="tool_call"),
                TurnLabel(message_index=7, act="answer")],
        gold_calls=[call], goal=args, ambiguities=[], needs_clarification=False,
        outcome="completed", provenance=Provenance(backend="sgd", seed=0), informs=informs,
    )


def test_an_annotated_inform_grounds_a_value_the_user_gave_in_other_words():
    economical = Inform(message_index=3, slot="price_range", value="moderate")
    assert validate.grounded(_search("Something economical.", [economical]), None) is None
    # the same words without the annotation are not the value
    assert validate.grounded(_search("Something economical.", []), None).startswith("ungrounded_value: find uses price_range")


@pytest.mark.parametrize("inform", [
    Inform(message_index=3, slot="price_range", value="cheap"),  # another value
    Inform(message_index=3, slot="cuisine", value="moderate"),  # another slot
    Inform(message_index=6, slot="price_range", value="moderate"),  # a user turn after the call
    Inform(message_index=2, slot="price_range", value="moderate"),  # not a user turn
    Inform(message_index=99, slot="price_range", value="moderate"),  # no such turn
])
def test_an_inform_grounds_only_its_slot_and_value_from_an_earlier_user_turn(inform):
    assert validate.grounded(_search("Something economical.", [inform]), None).startswith("ungrounded_value")


def test_a_yes_no_value_needs_its_words_even_when_annotated():
    drink = [Inform(message_index=3, slot="serves_alcohol", value="True")]
    assert validate.grounded(_search("A meal and a drink.", drink, {"serves_alcohol": True}), None).startswith("ungrounded_value")
    assert validate.grounded(_search("Somewhere that serves alcohol.", drink, {"serves_alcohol": True}), None) is None


def _slots(*names, enums=None):
    enums = enums or {}
    return [SlotSpec(name=n, description=n, enum=enums.get(n)) for n in names]


@pytest.mark.parametrize(
    "question, names, enums, expected",
    [
        # A slot's full label claims its words from slots that share one of them.
        ("Which event title should I use?", ("event_date", "event_title", "new_title"), None, {"event_title"}),
        ("What pickup date would you like?", ("pickup_date", "pickup_location", "pickup_time", "return_date"), None, {"pickup_date"}),
        ("Can you give me the origin city?", ("origin_city", "destination_city"), None, {"origin_city"}),
        # A slot's own label beats one word of another slot's name.
        ("Which event should I use?", ("event_date", "event_name"), None, {"event_name"}),
        ("Can you give me the car?", ("car_model", "car_type"), None, {"car_type"}),
        # Enum values name their slot; an ambiguous word then goes to the slot already named.
        ("Those conflict: standard versus luxury. Which ride do you want?", ("ride_id", "ride_type"),
         {"ride_type": ["standard", "luxury"]}, {"ride_type"}),
        # Stop words of a slot name are no cue ("check_in_date" is not asked about by "in").
        ("What hotel do you have in mind?", ("check_in_date", "hotel_name"), None, {"hotel_name"}),
        # Quoted user words and listed options are not what is asked.
        ('When you say "in the morning", which hour exactly do you mean?', ("date", "hour"), None, {"hour"}),
        ("I see Sprint planning or Date night. Which event title should I use?", ("event_date", "event_title", "new_date"),
         None, {"event_title"}),
        # Asked as "which X", a word several slots share goes to the slot that names the X: its title, not its date.
        ("I see Sprint planning or Date night. Which event is it?", ("event_date", "event_title", "new_date"),
         None, {"event_title"}),
        # Several slots really asked about are all found.
        ("Which restaurant, and how many people?", ("party_size", "restaurant_name", "city"), None, {"party_size", "restaurant_name"}),
        ("What date and time work for you?", ("date", "time", "city"), None, {"date", "time"}),
        # "how many" names any *_number slot, but "how many travelers" asks for the travelers, not the trip number
        ("Which trip, and how many travelers?", ("trip_number", "travelers", "travel_date"), None, {"trip_number", "travelers"}),
        ("How many travelers?", ("trip_number", "travelers"), None, {"travelers"}),
        ("Anything else?", ("date", "time"), None, set()),
    ],
)
def test_question_targets_shapes(question, names, enums, expected):
    assert question_targets(question, _slots(*names, enums=enums)) == expected


def test_question_targets_match_gold_on_generated_questions(tmp_path):
    """Against all the tools' slots (as rewards and the user simulator pass them), gold questions name their gold
    targets. The only known exception: slots whose names say the same thing (ride_id and ride_type are both "ride")."""
    run_dir = generate(RunConfig(n=300, seed=3, out=str(tmp_path / "run")))
    dialogues = [d for split in load_dialogues(str(run_dir)).values() for d in split]
    rows = [r for r in decision_rows(dialogues) if r["act"] == "clarify"]
    assert len(rows) > 100
    wrong = [
        (r["gold_content"], sorted(r["target_slots"]), sorted(got))
        for r in rows
        if (got := question_targets(r["gold_content"], slot_specs(r["slots"]))) != set(r["target_slots"])
    ]
    assert len(wrong) <= 0.02 * len(rows), wrong[:10]


def test_reference_date_reads_the_system_message_the_generators_write():
    """Relative dates ground against the date the system message states, in whatever form the generator writes it."""
    from speakrl.pipeline.checks import reference_date
    from speakrl.pipeline.stages.dialogues import system_prompt

    assert reference_date(system_prompt(None, "2019-03-01")) == date(2019, 3, 1)
    assert reference_date(system_prompt(None, "2026-06-05T07:40:00")) == date(2026, 6, 5)


# Human clarification questions (SGD's wording, SGD's slot descriptions): how they name the slots they ask about.
RESTAURANT = [SlotSpec(name="restaurant_name", description="Name of the restaurant"),
              SlotSpec(name="city", description="City in which the restaurant is located"),
              SlotSpec(name="cuisine", description="Cuisine of food served in the restaurant", values=["Italian", "Indian", "Chinese"]),
              SlotSpec(name="time", description="Time for the reservation or to find availability"),
              SlotSpec(name="party_size", description="Party size", type="integer", values=["2", "4"]),
              SlotSpec(name="date", description="Date", values=["2019-03-02"])]
EVENTS = [SlotSpec(name="event_name", description="Name of match or artist for event"),
          SlotSpec(name="event_type", description="Type of event", enum=["Music", "Sports"]),
          SlotSpec(name="city", description="City where the event is taking place")]
EVENTS_1 = [SlotSpec(name="category", description="Type of event", enum=["Music", "Sports"]),
            SlotSpec(name="event_name", description="Name of event"),
            SlotSpec(name="city_of_event", description="City where event is happening"),
            SlotSpec(name="event_location", description="Name of event location"),
            SlotSpec(name="address_of_location", description="Street address of event location")]
MOVIES = [SlotSpec(name="title", description="Title of the movie"), SlotSpec(name="genre", description="Genre of the movie")]


@pytest.mark.parametrize("question, slots, asked", [
    ("What kind of food are you looking for?", RESTAURANT, {"cuisine"}),
    ("Which area are you interested in?", RESTAURANT, {"city"}),
    ("What location do you want?", RESTAURANT, {"city"}),
    ("Is there a metropolis you prefer me to search in?", RESTAURANT, {"city"}),
    ("Is there anywhere you particularly want to go?", RESTAURANT, {"city"}),
    ("Is there a diner you prefer?", RESTAURANT, {"restaurant_name"}),
    ("Which movie do you want to watch?", MOVIES, {"title"}),
    ("Are you looking for Italian, Indian or something else?", RESTAURANT, {"cuisine"}),  # offered values
    # "Type of event" is asked as "what kind of event" (also in the plural) or "the event category"
    ("What kind of events do you like?", EVENTS, {"event_type"}),
    ("What types of events interest you?", EVENTS, {"event_type"}),
    ("Is there a preference on the event category?", EVENTS_1, {"category"}),
    ("Which category of events do you prefer?", EVENTS_1, {"category"}),
    # a classifying slot is asked as "what kind of" a noun of its description, or of itself
    ("What style of restaurant would you like me to find?", RESTAURANT, {"cuisine"}),
    ("What types of food do you want?", RESTAURANT, {"cuisine"}),
    ("What type of movie do you like?", MOVIES, {"genre"}),
    ("What city and what kind of cuisine are you interested in?", RESTAURANT, {"city", "cuisine"}),
    # asking "which X" of a name and a type of the same thing asks which one
    ("Which event?", EVENTS, {"event_name"}),
    ("Is there a specific city and event that you are interested in today?", EVENTS, {"city", "event_name"}),
    # "city_of_event" is a city: "event" alone does not name it; "where" asks the city, not a named place
    ("Do you have any specific category of events in mind?", EVENTS_1, {"category"}),
    ("Okay, sure. Where should I look?", EVENTS_1, {"city_of_event"}),
    # a sentence opening like a question asks, whatever its punctuation
    ("Where are you looking to go for the event. What kind of events do you prefer?", EVENTS, {"city", "event_type"}),
])
def test_human_wordings_name_the_asked_slot(question, slots, asked):
    assert question_targets(question, slots) == asked


@pytest.mark.parametrize("question, slots, asked", [
    # what the question is about, after "the", "this", "for", "in": not what it asks
    ("What city is the restaurant located in?", RESTAURANT, {"city"}),
    ("What time would you like dine in at the restaurant?", RESTAURANT, {"time"}),
    ("Which city should I look for this restaurant in?", RESTAURANT, {"city"}),
    ("Which city are you looking for a restaurant in?", RESTAURANT, {"city"}),
    ("Do you have a specific city that you are looking for the event in?", EVENTS, {"city"}),
    ("You are looking for events in which city?", EVENTS, {"city"}),
    ("Do you want the event in any particular city?", EVENTS, {"city"}),
    # right after a value: the value describes it ("sports events", "Chinese restaurants")
    ("Which city should I search for music events?", EVENTS, {"city"}),
    ("What kind of food do you like? I can find Chinese restaurants, Indian restaurants, and others.", RESTAURANT, {"cuisine"}),
    # ... unless it is what is asked, or listed with what is asked
    ("Can you give me the name of the event that you are interested in?", EVENTS, {"event_name"}),
    ("Do you know the event you are interested in? Do you have a preference on the city in which I should look?",
     EVENTS, {"city", "event_name"}),
    ("Do you have a preference on the city for the events? Do you have a particular event in mind?", EVENTS, {"city", "event_name"}),
    ("Please let me know the city to search in, and the type of events that interest you.", EVENTS, {"city", "event_type"}),
    ("What is your preference in regards to city and type of cuisine?", RESTAURANT, {"city", "cuisine"}),
    ("Which city should I search, and what is the time you want?", RESTAURANT, {"city", "time"}),
])
def test_what_a_question_is_about_is_not_what_it_asks(question, slots, asked):
    assert question_targets(question, slots) == asked


@pytest.mark.parametrize("question, slots, sgd_requested, asked", [
    # SGD's paraphrase dropped a requested slot: the words ask the city only
    ("For which city are you interested in?", EVENTS, {"city", "event_name"}, {"city"}),
    ("Is it indian, Italian that you are looking for", RESTAURANT, {"city", "cuisine"}, {"cuisine"}),
    # ... or asks one it did not request
    ("At what restaurant and time would you like to dine?", RESTAURANT, {"time"}, {"restaurant_name", "time"}),
    # the words ask a kind of event although the intent (GetEventDates) requested its name
    ("What kind of events do you like?", EVENTS, {"event_name"}, {"event_type"}),
])
def test_sgd_labels_the_words_do_not_bear_are_not_followed(question, slots, sgd_requested, asked):
    assert question_targets(question, slots) == asked != sgd_requested


def test_numbers_and_dates_among_known_values_are_no_cue():
    assert question_targets("Is that for 2 on 2019-03-02, right?", RESTAURANT[2:]) == set()
    assert question_targets("Anything else?", RESTAURANT) == set()


COUNTS = [SlotSpec(name="number_of_seats", description="Number of seats to find event tickets for"),
          SlotSpec(name="event_name", description="Name of event")]
TRAINS = [SlotSpec(name="travelers", description="Number of travelers for the trip"),
          SlotSpec(name="trip_number", description="Train or bus trip number")]


@pytest.mark.parametrize("question, slots, asked", [
    # a word of a slot's name with one slip of the keyboard (dropped, swapped or changed letter) still names it
    ("Any favourite resturant in mind, and for what time?", RESTAURANT, {"restaurant_name", "time"}),
    ("Which restaurnat should I book you into?", RESTAURANT, {"restaurant_name"}),
    ("What catefory of events do you like?", EVENTS_1, {"category"}),
    # ... but a short word is no slip of another ("even" is not "event")
    ("Is that even possible for you?", EVENTS, set()),
    # a count described as "Number of ..." is asked as "what number of", whatever it is counted in
    ("And what number of passes do you need?", COUNTS, {"number_of_seats"}),
    # ... and a slot that is a number, not a count, is not ("the trip number" is no count of travelers)
    ("Could you tell me the number of travelers?", TRAINS, {"travelers"}),
    # a classifying slot is asked as "what kind of" the usual words for the nouns of its description
    ("What sort of diner are you after?", RESTAURANT, {"cuisine"}),
    # "kind of X" with an article between ("the category of the event")
    ("Any preference for the category of the event?", EVENTS_1, {"category"}),
])
def test_human_wordings_read_through_slips_counts_and_synonyms(question, slots, asked):
    assert question_targets(question, slots) == asked
