"""ExperimentSelector and the selector rules of DeleteSpec: pure, no server.

The model's rules, ``filter_string``, ``matches`` (MLflow's ``LIKE``: ``%`` any run of
characters, ``_`` exactly one, case-sensitive, anchored at both ends, every other character
literal), ``excludes``, ``describe``, and how :func:`expand` reads a retention tag, driven by
fake ``lookup`` / ``search`` callables. The same against the simulated server is
``tests/engine/test_selection.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from async_trace_delete import (
    DeleteSpec,
    Experiment,
    ExperimentSelector,
    SkippedExperiment,
    SpecError,
)
from async_trace_delete._durations import format_instant
from async_trace_delete._selection import expand

NOW = 1_750_000_000_000  # a fixed "now", epoch ms
CUTOFF = NOW - 30 * 86_400_000  # the job's own cutoff: thirty days ago
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
ALL = ExperimentSelector(all_experiments=True)
NOT_A_DURATION = (
    "write a number and a unit (s, m = minutes, h, d, w), e.g. 30m, 12h, 7d, 2w or 1d12h"
)


def experiment(experiment_id: str, name: str, *, stage: str = "active", **tags: str) -> Experiment:
    """An experiment as the client reads it from MLflow."""
    return Experiment(experiment_id=experiment_id, name=name, lifecycle_stage=stage, tags=tags)


def selector_refused(match: str, **fields: Any) -> SpecError:
    """Build a selector that must fail; return the error after checking its text."""
    with pytest.raises(SpecError, match=match) as caught:
        ExperimentSelector(**fields)
    return caught.value


def spec_refused(match: str, **fields: Any) -> SpecError:
    """Build a spec that must fail; return the error after checking its text."""
    with pytest.raises(SpecError, match=match) as caught:
        DeleteSpec(**fields)
    return caught.value


class FakeSearch:
    """``experiments/search`` answered from fixed pages per view type, every call logged."""

    def __init__(self, pages: Mapping[str, Sequence[Sequence[Experiment]]]) -> None:
        self.pages = pages
        self.calls: list[tuple[str | None, str, str | None]] = []

    async def __call__(
        self, filter_string: str | None, view: str, token: str | None
    ) -> tuple[tuple[Experiment, ...], str | None]:
        self.calls.append((filter_string, view, token))
        pages = self.pages.get(view, [[]])
        index = int(token or 0)
        following = str(index + 1) if index + 1 < len(pages) else None
        return tuple(pages[index]), following


async def no_lookup() -> Experiment:
    raise AssertionError("a selector job must not look a single experiment up")


async def expand_over(
    spec: DeleteSpec, active: Sequence[Experiment], deleted: Sequence[Experiment] = ()
) -> tuple[list[tuple[DeleteSpec, Experiment]], list[SkippedExperiment]]:
    """``expand`` on a search that answers ``active`` and ``deleted`` in one page each."""
    search = FakeSearch({"ACTIVE_ONLY": [active], "DELETED_ONLY": [deleted]})
    return await expand(spec, lookup=no_lookup, search=search, now_millis=NOW)


def retention_spec(**extra: Any) -> DeleteSpec:
    """Every experiment, tag ``retention``, the job's own cutoff thirty days ago."""
    return DeleteSpec(
        experiments=ALL, max_timestamp_millis=CUTOFF, retention_tag="retention", **extra
    )


# -- the selector's own rules ------------------------------------------------------------------


def test_a_selector_needs_all_experiments_a_pattern_or_tags() -> None:
    """A selector that selects by nothing is refused, naming the three ways."""
    selector_refused("needs all_experiments, name_like or tags", exclude_names=("a",))


@pytest.mark.parametrize(
    "narrowing", [{"name_like": "chat-%"}, {"tags": {"team": "search"}}], ids=["name", "tags"]
)
def test_all_experiments_with_a_narrowing_is_refused(narrowing: dict[str, Any]) -> None:
    """all_experiments together with a pattern or tags is refused: one or the other."""
    selector_refused(
        "all_experiments selects every experiment; .* give one or the other",
        all_experiments=True,
        **narrowing,
    )


@pytest.mark.parametrize("value", ["yes", "true", 1, "1"])
def test_all_experiments_is_a_strict_bool(value: Any) -> None:
    """all_experiments takes True or False only: "yes", "true", 1 are refused."""
    error = selector_refused("valid boolean", all_experiments=value)
    assert [item["loc"] for item in error.errors()] == [("all_experiments",)]


def test_a_nested_selector_in_a_spec_is_strict_too() -> None:
    """A spec's experiments={"all_experiments": "yes"} is refused at that nested field."""
    error = spec_refused(
        "valid boolean", experiments={"all_experiments": "yes"}, max_timestamp_millis=CUTOFF
    )
    assert [item["loc"] for item in error.errors()] == [("experiments", "all_experiments")]


@pytest.mark.parametrize(
    ("pattern", "rule"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("o'brien-%", "must not contain a quote or a backslash"),
        ("chat\\_%", "must not contain a quote or a backslash"),
    ],
    ids=["empty", "blank", "quote", "backslash"],
)
def test_bad_name_patterns_are_refused(pattern: str, rule: str) -> None:
    """An empty pattern, or one with a quote or a backslash (it goes into a filter), is refused."""
    error = selector_refused(rule, name_like=pattern)
    assert [item["loc"] for item in error.errors()] == [("name_like",)]


@pytest.mark.parametrize(
    ("tags", "rule"),
    [
        ({"": "search"}, "tag key '' must be letters, digits"),
        ({"te am": "search"}, "tag key 'te am' must be letters, digits"),
        ({"te`am": "search"}, "tag key 'te`am' must be letters, digits"),
        ({"te'am": "search"}, 'tag key "te\'am" must be letters, digits'),
        ({"team": "o'brien"}, "tag 'team': the value must be text without quotes"),
        ({"team": "a\\b"}, "tag 'team': the value must be text without quotes"),
        ({"team": 1}, "valid string"),
    ],
    ids=["empty-key", "space-key", "backtick-key", "quote-key", "quote", "backslash", "int"],
)
def test_bad_tags_are_refused(tags: dict[str, Any], rule: str) -> None:
    """A tag key that is empty or not [A-Za-z0-9_.-], or a value with a quote, is refused."""
    error = selector_refused(rule, tags=tags)
    assert error.errors()[0]["loc"][0] == "tags"


@pytest.mark.parametrize("bad", ["abc", "1a", "", " 1", "-1", "1.0"])
def test_excluded_ids_must_be_whole_numbers(bad: str) -> None:
    """An excluded ID that is not all digits is refused, quoting it."""
    error = selector_refused(
        f"{bad!r} is not an experiment ID", all_experiments=True, exclude_ids=("7", bad)
    )
    assert [item["loc"] for item in error.errors()] == [("exclude_ids",)]


def test_a_selector_is_frozen_and_takes_no_unknown_field() -> None:
    """Unknown fields are refused and a built selector cannot be changed."""
    selector_refused("Extra inputs are not permitted", all_experiments=True, name="chat")
    with pytest.raises(SpecError, match="frozen"):
        ALL.all_experiments = False  # type: ignore[misc]


# -- the spec's rules for a selector -----------------------------------------------------------


@pytest.mark.parametrize(
    "named",
    [
        {},
        {"experiment_id": "1", "experiments": ALL},
        {"experiment_name": "prod", "experiments": ALL},
        {"experiment_id": "1", "experiment_name": "prod", "experiments": ALL},
    ],
    ids=["none", "id-and-selector", "name-and-selector", "all-three"],
)
def test_exactly_one_of_id_name_and_selector(named: dict[str, Any]) -> None:
    """A spec names its experiments exactly one way: an ID, a name or a selector."""
    spec_refused(
        "give exactly one of experiment_id, experiment_name and an experiment selector",
        max_timestamp_millis=CUTOFF,
        **named,
    )


def test_a_selector_with_trace_ids_is_refused() -> None:
    """Trace IDs belong to one experiment: a selector cannot take them."""
    spec_refused(
        "trace_ids belong to one experiment: name it with experiment_id or experiment_name",
        experiments=ALL,
        trace_ids=["tr-1"],
    )


@pytest.mark.parametrize(
    "selection", [{"filter_string": "status = 'ERROR'"}, {}], ids=["filter-only", "nothing"]
)
def test_a_retention_tag_needs_the_jobs_own_cutoff(selection: dict[str, Any]) -> None:
    """retention_tag without older_than / max_timestamp_millis is refused: the untagged ones
    would have no cutoff."""
    spec_refused(
        "retention_tag needs the job's own cutoff",
        experiments=ALL,
        retention_tag="retention",
        **selection,
    )


@pytest.mark.parametrize("tag", ["", "  "])
def test_a_blank_retention_tag_is_refused(tag: str) -> None:
    """An empty retention tag name is refused."""
    spec_refused(
        "retention_tag: must not be empty",
        experiments=ALL,
        older_than=timedelta(days=7),
        retention_tag=tag,
    )


@pytest.mark.parametrize(
    "cutoff", [{"older_than": timedelta(days=7)}, {"max_timestamp_millis": CUTOFF}]
)
def test_a_retention_tag_with_either_cutoff_is_accepted(cutoff: dict[str, Any]) -> None:
    """retention_tag with older_than or with max_timestamp_millis builds; it is a cutoff job."""
    spec = DeleteSpec(experiments=ALL, retention_tag="retention", **cutoff)
    assert (spec.mode, spec.retention_tag) == ("cutoff", "retention")


def test_a_selector_spec_is_named_by_its_description_and_cannot_resolve_alone() -> None:
    """The spec's ``experiment`` is the selector in words; resolve() needs one experiment."""
    spec = DeleteSpec(
        experiments=ExperimentSelector(name_like="chat-%", exclude_ids=("3",)),
        max_timestamp_millis=CUTOFF,
    )
    assert spec.experiment == "experiments with name LIKE 'chat-%', except 3"
    with pytest.raises(ValueError, match="a selector must be resolved to an ID"):
        spec.resolve(now_millis=NOW, experiment_id="3")


# -- filter_string -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (ALL, None),
        (ExperimentSelector(all_experiments=True, exclude_names=("a",), exclude_ids=("2",)), None),
        (ExperimentSelector(name_like="chat-%"), "name LIKE 'chat-%'"),
        (ExperimentSelector(name_like="chat-_", exclude_names=("chat-x",)), "name LIKE 'chat-_'"),
        (ExperimentSelector(tags={"team": "search"}), "tags.`team` = 'search'"),
        (
            ExperimentSelector(tags={"team": "search", "env": "prod"}),
            "tags.`env` = 'prod' AND tags.`team` = 'search'",
        ),
        (
            ExperimentSelector(name_like="%-bot", tags={"team": "search", "env": "prod"}),
            "name LIKE '%-bot' AND tags.`env` = 'prod' AND tags.`team` = 'search'",
        ),
        (ExperimentSelector(tags={"mlflow.note": ""}), "tags.`mlflow.note` = ''"),
    ],
    ids=[
        "all",
        "all-less-exclusions",
        "like",
        "like-less-name",
        "tag",
        "two-tags",
        "both",
        "empty-value",
    ],
)
def test_filter_string(selector: ExperimentSelector, expected: str | None) -> None:
    """The search filter: LIKE first, then the tags sorted by key, AND-joined; exclusions are
    never in it (they are applied to the answer)."""
    assert selector.filter_string() == expected


# -- matches: MLflow's LIKE and the tags -------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("chat-%", "chat-bot", True),
        ("chat-%", "chat-", True),  # % matches an empty run too
        ("chat-%", "xchat-bot", False),  # anchored at the start
        ("%-prod", "eu-prod", True),
        ("%-prod", "eu-prod-2", False),  # anchored at the end
        ("%a%b%", "xaybz", True),
        ("chat-_", "chat-a", True),
        ("chat-_", "chat-", False),  # _ is exactly one character, never none
        ("chat-_", "chat-ab", False),  # ... and never two
        ("__", "ab", True),
        ("__", "a", False),
        ("chat-%", "Chat-bot", False),  # case-sensitive
        ("CHAT", "chat", False),
        ("a.b", "axb", False),  # a dot is a dot, not a regex wildcard
        ("a.b", "a.b", True),
        ("a+b", "aab", False),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("(x)%", "(x)1", True),
        ("a$b^", "a$b^", True),
        ("a%b", "a\nb", True),  # % runs over newlines
        ("a_b", "a\nb", True),
        ("%", "anything at all", True),
        ("exact", "exact", True),
        ("exact", "exactly", False),
    ],
)
def test_name_like_is_sql_like(pattern: str, name: str, expected: bool) -> None:
    """``matches`` applies MLflow's case-sensitive LIKE: % any run, _ one character, the rest
    literal, the whole name."""
    selector = ExperimentSelector(name_like=pattern)
    assert selector.matches(experiment("1", name)) is expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"team": "search", "env": "prod"}, True),
        ({"team": "search", "env": "prod", "owner": "kim"}, True),  # more tags are fine
        ({"team": "search"}, False),  # every tag must be there
        ({"team": "search", "env": "dev"}, False),
        ({"team": "Search", "env": "prod"}, False),  # values are case-sensitive
        ({"TEAM": "search", "env": "prod"}, False),  # ... and so are keys
        ({}, False),
    ],
)
def test_all_tags_must_match(tags: dict[str, str], expected: bool) -> None:
    """An experiment matches a two-tag selector only if it holds both values exactly."""
    selector = ExperimentSelector(tags={"team": "search", "env": "prod"})
    assert selector.matches(experiment("1", "any", **tags)) is expected


@pytest.mark.parametrize(
    ("name", "tags", "expected"),
    [
        ("chat-bot", {"team": "search"}, True),
        ("chat-bot", {"team": "ads"}, False),
        ("mail-bot", {"team": "search"}, False),
    ],
)
def test_name_like_and_tags_must_both_match(
    name: str, tags: dict[str, str], expected: bool
) -> None:
    """With a pattern and a tag, an experiment must match both."""
    selector = ExperimentSelector(name_like="chat-%", tags={"team": "search"})
    assert selector.matches(experiment("1", name, **tags)) is expected


def test_all_experiments_matches_everything_and_an_empty_tag_value_is_a_value() -> None:
    """all_experiments matches any experiment; a tag selector for '' wants the tag, set empty."""
    assert ALL.matches(experiment("1", "x"))
    assert ALL.matches(experiment("2", "y", stage="deleted", team="a"))
    empty = ExperimentSelector(tags={"note": ""})
    assert empty.matches(experiment("3", "z", note=""))
    assert not empty.matches(experiment("4", "z"))


def test_excludes_by_name_or_by_id_and_matches_ignores_exclusions() -> None:
    """``excludes`` drops an experiment named or numbered in the exclusions; ``matches`` does not
    look at them (they are reported, not silently dropped)."""
    selector = ExperimentSelector(
        name_like="chat-%", exclude_names=("chat-keep",), exclude_ids=("7",)
    )
    kept_by_name = experiment("3", "chat-keep")
    kept_by_id = experiment("7", "chat-other")
    taken = experiment("8", "chat-go")
    assert [selector.excludes(e) for e in (kept_by_name, kept_by_id, taken)] == [True, True, False]
    assert all(selector.matches(e) for e in (kept_by_name, kept_by_id, taken))
    assert not selector.excludes(experiment("9", "chat-keep-2"))  # whole names only
    assert not selector.excludes(experiment("70", "x"))  # whole IDs only


# -- describe ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        (ALL, "all experiments"),
        (
            ExperimentSelector(all_experiments=True, exclude_names=("a", "b"), exclude_ids=("7",)),
            "all experiments, except a, b, 7",
        ),
        (ExperimentSelector(name_like="chat-%"), "experiments with name LIKE 'chat-%'"),
        (
            ExperimentSelector(tags={"team": "search", "env": "prod"}),
            "experiments with tag env=prod and tag team=search",
        ),
        (
            ExperimentSelector(name_like="c_t", tags={"team": "search"}, exclude_ids=("4",)),
            "experiments with name LIKE 'c_t' and tag team=search, except 4",
        ),
    ],
    ids=["all", "all-except", "like", "tags", "both-except"],
)
def test_describe(selector: ExperimentSelector, text: str) -> None:
    """The selector in words for labels and messages: tags sorted, exclusions last."""
    assert selector.describe() == text


# -- expand: what the search answers and the retention tag -------------------------------------


@pytest.mark.asyncio
async def test_expand_searches_both_views_with_the_filter_and_pages_through() -> None:
    """The active and the deleted view are each paged to the end with the selector's filter."""
    selector = ExperimentSelector(name_like="chat-%")
    search = FakeSearch(
        {
            "ACTIVE_ONLY": [[experiment("1", "chat-a")], [experiment("2", "chat-b")]],
            "DELETED_ONLY": [[experiment("3", "chat-c", stage="deleted")]],
        }
    )
    spec = DeleteSpec(experiments=selector, max_timestamp_millis=CUTOFF, label="nightly")
    expanded, skipped = await expand(spec, lookup=no_lookup, search=search, now_millis=NOW)
    assert search.calls == [
        ("name LIKE 'chat-%'", "ACTIVE_ONLY", None),
        ("name LIKE 'chat-%'", "ACTIVE_ONLY", "1"),
        ("name LIKE 'chat-%'", "DELETED_ONLY", None),
    ]
    assert [(one.experiment_id, one.label, one.max_timestamp_millis) for one, _ in expanded] == [
        ("1", "nightly/chat-a", CUTOFF),
        ("2", "nightly/chat-b", CUTOFF),
    ]
    assert all(one.experiments is None and one.experiment_name is None for one, _ in expanded)
    assert skipped == [
        SkippedExperiment("nightly/chat-c", "3", "chat-c", "the experiment is deleted")
    ]


@pytest.mark.asyncio
async def test_expand_never_takes_what_the_selector_did_not_ask_for() -> None:
    """An answer naming an experiment outside the selector (either view), or a deleted one in the
    active view, is not taken and not reported."""
    selector = ExperimentSelector(name_like="chat-%", tags={"team": "search"})
    spec = DeleteSpec(experiments=selector, max_timestamp_millis=CUTOFF)
    expanded, skipped = await expand_over(
        spec,
        active=[
            experiment("1", "chat-a", team="search"),
            experiment("2", "billing", team="search"),  # the name does not match
            experiment("3", "chat-b", team="ads"),  # the tag does not match
            experiment("4", "chat-c", stage="deleted", team="search"),  # deleted in ACTIVE_ONLY
        ],
        deleted=[experiment("5", "payroll", stage="deleted", team="search")],
    )
    assert [one.experiment_id for one, _ in expanded] == ["1"]
    assert skipped == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("tag", "retention"),
    [
        ("1d", timedelta(days=1)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(hours=36)),
        (" 30m ", timedelta(minutes=30)),
    ],
)
async def test_a_readable_retention_tag_is_the_experiments_older_than(
    tag: str, retention: timedelta
) -> None:
    """A tag holding a duration replaces the job's cutoff for that experiment by ``older_than``."""
    expanded, skipped = await expand_over(
        retention_spec(), active=[experiment("1", "tagged", retention=tag)]
    )
    assert skipped == []
    ((one, _),) = expanded
    assert (one.older_than, one.max_timestamp_millis) == (retention, None)
    assert one.pin_cutoff(now_millis=NOW) == NOW - retention // timedelta(milliseconds=1)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("tag", "why"),
    [
        ("soon", f"cannot read 'soon' as a duration; {NOT_A_DURATION}"),
        ("0d", "a retention must be longer than zero"),
        ("0s", "a retention must be longer than zero"),
        ("-1d", f"cannot read '-1d' as a duration; {NOT_A_DURATION}"),
        ("", f"cannot read '' as a duration; {NOT_A_DURATION}"),
        ("6M", "cannot read '6M' as a duration: months and years have no fixed length"),
        ("1y", "cannot read '1y' as a duration: months and years have no fixed length"),
        ("7D", "cannot read '7D' as a duration: units are lowercase: write 7d"),
        ("7", f"cannot read '7' as a duration; {NOT_A_DURATION}"),
    ],
)
async def test_an_unreadable_retention_tag_skips_only_that_experiment(tag: str, why: str) -> None:
    """A tag that is not a positive duration skips its experiment with the reason; the
    untagged experiment keeps the job's cutoff."""
    expanded, skipped = await expand_over(
        retention_spec(),
        active=[experiment("1", "tagged", retention=tag), experiment("2", "untagged")],
    )
    assert [(one.experiment_id, one.max_timestamp_millis) for one, _ in expanded] == [("2", CUTOFF)]
    ((left_out),) = skipped
    assert (left_out.label, left_out.experiment_id, left_out.name) == ("tagged", "1", "tagged")
    assert left_out.reason.startswith(f"its tag retention={tag!r} is not a retention: {why}")
    assert left_out.reason.endswith("; nothing is deleted in it")


@pytest.mark.asyncio
async def test_a_retention_shorter_than_min_retention_skips_only_that_experiment() -> None:
    """Under min_retention=1d a 12h tag is skipped with the guardrail's reason; a 1d tag (just
    at the limit) and a 2w tag are taken."""
    expanded, skipped = await expand_over(
        retention_spec(min_retention=timedelta(days=1)),
        active=[
            experiment("1", "half-day", retention="12h"),
            experiment("2", "one-day", retention="1d"),
            experiment("3", "two-weeks", retention="2w"),
        ],
    )
    assert [(one.experiment_id, one.pin_cutoff(now_millis=NOW)) for one, _ in expanded] == [
        ("2", NOW - DAY_MS),
        ("3", NOW - 14 * DAY_MS),
    ]
    ((left_out),) = skipped
    assert (left_out.experiment_id, left_out.name) == ("1", "half-day")
    assert left_out.reason == (
        f"its tag retention='12h': min_retention: the cutoff {format_instant(NOW - 12 * HOUR_MS)} "
        f"keeps less than 1d of traces (it must be at or before {format_instant(NOW - DAY_MS)}, "
        "1d before now); pass force=True to override; nothing is deleted in it"
    )


@pytest.mark.asyncio
async def test_another_tag_than_the_retention_tag_is_not_read() -> None:
    """Only the tag named by retention_tag is read: an experiment with other tags, even
    unreadable ones, keeps the job's cutoff."""
    expanded, skipped = await expand_over(
        retention_spec(),
        active=[experiment("1", "other", ttl="1d", retention_days="soon")],
    )
    assert [
        (one.experiment_id, one.max_timestamp_millis, one.older_than) for one, _ in expanded
    ] == [("1", CUTOFF, None)]
    assert skipped == []
