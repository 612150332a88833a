"""The matcher's documented semantics: most specific entry wins, same-name merge, normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforcer.decide.matcher import NOT_GOVERNED, MatchEntry, Matcher, Verdict
from enforcer.models import Action, normalize


def test_entry_matches_itself_and_every_name_below():
    m = Matcher([MatchEntry("example.com", Action.BLOCK, "app")])
    assert m.verdict("example.com") == Verdict(Action.BLOCK, "example.com", "app")
    assert m.verdict("a.b.example.com") == Verdict(Action.BLOCK, "example.com", "app")
    assert m.verdict("a.b.example.com").blocked
    assert m.verdict("notexample.com") == NOT_GOVERNED
    assert m.verdict("example.com.evil") == NOT_GOVERNED
    assert m.verdict("com") == NOT_GOVERNED
    assert not m.verdict("com").blocked


def test_most_specific_entry_wins_both_ways():
    m = Matcher(
        [
            MatchEntry("example.com", Action.BLOCK),
            MatchEntry("docs.example.com", Action.ALLOWED),
            MatchEntry("corp.com", Action.ALLOWED),
            MatchEntry("evil.corp.com", Action.BLOCK),
        ]
    )
    assert m.verdict("x.docs.example.com").action is Action.ALLOWED
    assert m.verdict("mail.example.com").action is Action.BLOCK
    assert m.verdict("evil.corp.com").action is Action.BLOCK
    assert m.verdict("www.corp.com").action is Action.ALLOWED


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        (Action.BLOCK, Action.ALLOWED, Action.ALLOWED),
        (Action.ALLOWED, Action.BLOCK, Action.ALLOWED),
        (Action.WARN, Action.BLOCK, Action.BLOCK),
        (Action.BLOCK, Action.WARN, Action.BLOCK),
        (Action.ALERT, Action.WARN, Action.WARN),
        (Action.AUDIT, Action.ALERT, Action.ALERT),
        (Action.ALERT, Action.AUDIT, Action.ALERT),
    ],
)
def test_same_name_entries_merge_by_strength(first, second, winner):
    m = Matcher([MatchEntry("example.com", first, "a"), MatchEntry("EXAMPLE.com.", second, "b")])
    assert m.verdict("example.com").action is winner
    assert len(m) == 1


def test_merge_keeps_the_app_of_the_winning_entry():
    m = Matcher()
    m.add(MatchEntry("x.com", Action.AUDIT, "auditor"))
    m.add(MatchEntry("x.com", Action.BLOCK, "blocker"))
    m.add(MatchEntry("x.com", Action.WARN, "warner"))
    assert m.verdict("x.com") == Verdict(Action.BLOCK, "x.com", "blocker")


@pytest.mark.parametrize("query", ["Example.COM", "example.com.", " example.com ", "EXAMPLE.com."])
def test_names_are_case_insensitive_with_or_without_trailing_dot(query):
    m = Matcher([MatchEntry("Example.Com.", Action.BLOCK)])
    assert m.verdict(query) == Verdict(Action.BLOCK, "example.com", "")


def test_idn_is_compared_in_punycode():
    m = Matcher([MatchEntry("bücher.example", Action.BLOCK)])
    assert m.verdict("xn--bcher-kva.example").blocked
    assert m.verdict("www.BÜCHER.example").blocked
    assert m.verdict("www.bucher.example") == NOT_GOVERNED
    puny = Matcher([MatchEntry("xn--bcher-kva.example", Action.BLOCK)])
    assert puny.verdict("bücher.example").blocked


@pytest.mark.parametrize("bad", ["", ".", "a..b", ".example.com", "   "])
def test_normalize_rejects_non_names(bad):
    with pytest.raises(ValueError):
        normalize(bad)
    with pytest.raises(ValueError):
        Matcher().add(MatchEntry(bad, Action.BLOCK))


def test_verdict_of_a_non_name_is_not_governed():
    m = Matcher([MatchEntry("example.com", Action.BLOCK)])
    assert m.verdict("a..example.com") == NOT_GOVERNED
    assert m.verdict("") == NOT_GOVERNED


def test_remove_forgets_and_tolerates_absent_entries():
    m = Matcher([MatchEntry("example.com", Action.BLOCK)])
    m.remove("EXAMPLE.com.")
    m.remove("never.added")
    assert m.verdict("example.com") == NOT_GOVERNED
    assert len(m) == 0


def test_add_domains_is_add_in_bulk():
    bulk = Matcher([MatchEntry("keep.com", Action.ALLOWED)])
    bulk.add_domains(["A.com.", "b.com", "keep.com"], Action.BLOCK, "app")
    assert bulk.verdict("x.a.com") == Verdict(Action.BLOCK, "a.com", "app")
    assert bulk.verdict("keep.com").action is Action.ALLOWED
    with pytest.raises(ValueError):
        bulk.add_domains(["ok.com", "bad..com"], Action.BLOCK)


def test_verdict_normalized_is_the_hot_path_form():
    m = Matcher([MatchEntry("example.com", Action.WARN, "w")])
    assert m.verdict_normalized("a.example.com") == Verdict(Action.WARN, "example.com", "w")
    assert isinstance(m.verdict_normalized("a.example.com"), Verdict)


labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)


@given(st.lists(st.tuples(domains, st.sampled_from(list(Action))), max_size=20), domains)
def test_verdict_is_the_longest_matching_suffix(entries, query):
    m = Matcher(MatchEntry(d, a) for d, a in entries)
    strongest: dict[str, Action] = {}
    for d, a in entries:
        if d not in strongest or a.strength >= strongest[d].strength:
            strongest[d] = a
    parts = query.split(".")
    expected = NOT_GOVERNED
    for i in range(len(parts)):
        suffix = ".".join(parts[i:])
        if suffix in strongest:
            expected = Verdict(strongest[suffix], suffix, "")
            break
    assert m.verdict(query) == expected
