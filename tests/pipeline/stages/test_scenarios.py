from collections import Counter

from speakrl.pipeline.stages import scenarios
from speakrl.schemas import AMBIGUITY_TYPES, RunConfig


def test_same_seed_same_scenarios_and_other_seed_differs(catalog, sim):
    cfg = RunConfig(n=50, seed=7)
    a = [s.model_dump() for s in scenarios.run(cfg, catalog, range(50), sim)]
    b = [s.model_dump() for s in scenarios.run(cfg, catalog, range(50), sim)]
    c = [s.model_dump() for s in scenarios.run(cfg.model_copy(update={"seed": 8}), catalog, range(50), sim)]
    assert a == b
    assert a != c


def test_scenario_index_is_independent_of_the_batch(catalog, sim):
    cfg = RunConfig(n=100, seed=3)
    whole = list(scenarios.run(cfg, catalog, range(100), sim))
    tail = list(scenarios.run(cfg, catalog, range(60, 100), sim))
    assert whole[60:] == tail


def test_default_mix_covers_every_type_with_25_to_40_percent_controls(catalog, sim):
    rows = list(scenarios.run(RunConfig(n=2000, seed=0), catalog, range(2000), sim))
    kinds = Counter(s.ambiguities[0].type if s.ambiguities else "none" for s in rows)
    assert set(kinds) == {"none", *AMBIGUITY_TYPES}
    assert 0.25 <= kinds["none"] / len(rows) <= 0.40
    assert all(s.needs_clarification == (bool(s.ambiguities) and s.ambiguities[0].type != "unsupported") for s in rows)
    assert 0.01 <= kinds["unsupported"] / len(rows) <= 0.08
    multi = [s for s in rows if sum(a.type == "missing_slot" for a in s.ambiguities) >= 2]
    assert len(multi) >= 50, "several missing slots in one request must occur"


def test_mix_is_configurable(catalog, sim):
    cfg = RunConfig(n=300, mix={"none": 0.0, "invalid_value": 1.0})
    rows = list(scenarios.run(cfg, catalog, range(300), sim))
    assert {s.ambiguities[0].type for s in rows} == {"invalid_value"}


def test_ambiguity_is_consistent_with_the_goal(catalog, sim):
    rows = list(scenarios.run(RunConfig(n=1500, seed=1), catalog, range(1500), sim))
    for s in rows:
        domain = catalog.domain(s.domain)
        tool = domain.tool(s.tool)
        if s.ambiguities and s.ambiguities[0].type == "unsupported":
            assert s.goal == {} and s.flow == [] and tool.name not in s.ambiguities[0].candidates
            continue
        assert set(s.goal) == set(tool.slots)
        for amb in s.ambiguities:
            assert amb.slot not in s.stated, "an ambiguous slot cannot also be stated"
            if amb.type == "invalid_value":
                assert amb.detail not in (domain.slot(amb.slot).enum or [])
                assert s.goal[amb.slot] in amb.candidates
            if amb.type == "conflicting_constraints":
                assert str(s.goal[amb.slot]) in amb.candidates and len(set(amb.candidates)) == 2
            if amb.type == "ambiguous_reference":
                assert len(amb.candidates) >= 2 and s.goal[amb.slot] in amb.candidates
                assert s.flow[-1] == s.tool and len(s.flow) == 2
        if not s.ambiguities:
            # a control states every non-default value: nothing is left to ask
            missing = [k for k in tool.required if k not in s.stated]
            assert not missing


def test_greetings_fit_the_scenarios_time_of_day(catalog, sim):
    """The system message states "now": an opening never says "Good morning!" at 5:40 pm."""
    from datetime import datetime

    from speakrl.pipeline.stages.phrasing import TIMED_GREETINGS

    rows = list(scenarios.run(RunConfig(n=1500, seed=2), catalog, range(1500), sim))
    timed = [(s, g) for s in rows for g in TIMED_GREETINGS if s.opening.startswith(g)]
    assert len(timed) > 20  # the timed greetings are used...
    for s, g in timed:  # ...only at the hours they name
        assert datetime.fromisoformat(s.now).hour in TIMED_GREETINGS[g], (s.now, s.opening)


def test_sharp_follows_only_clock_times_and_nothing_is_in_total(catalog, sim):
    """ "Make it at Penn Station sharp" and "Sunday in total" are not what people say."""
    import re

    rows = list(scenarios.run(RunConfig(n=1500, seed=4), catalog, range(1500), sim))
    openings = " ".join(s.opening for s in rows)
    sharp = re.findall(r"(\S+(?: [ap]m)?) sharp", openings)
    assert sharp  # the variant is still used...
    assert all(re.search(r"\d|noon|midnight", w) for w in sharp), sharp  # ...after a clock time only
    assert " in total" not in openings  # it only ever followed dates and names


def test_a_booking_ends_after_it_starts_on_sgd_schemas():
    """SGD's rental cars, hotels and flights draw each date from one pool: a car dropped off before its pickup, or a
    stay that checks out on its check-in day, must not reach a goal."""
    from pathlib import Path

    from speakrl.pipeline.catalog import load_catalog
    from speakrl.pipeline.catalog.sim import Simulator, date_span
    from speakrl.pipeline.quality import parse_date

    sgd = load_catalog(str(Path(__file__).resolve().parents[3] / "data/sgd/train_schema.json"))
    spans = 0
    for s in scenarios.run(RunConfig(n=600, seed=3), sgd, range(600), Simulator(sgd)):
        span = date_span(s.goal)
        if not span:
            continue
        first, last = (parse_date(s.goal[k], None) for k in span)
        spans += 1
        assert last > first or (last == first and "out" not in span[1]), (s.tool, s.goal)
    assert spans > 40
