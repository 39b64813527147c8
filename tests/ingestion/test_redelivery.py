"""Re-deliveries, re-assertion and feed precedence (issue #16): one small example per branch of the merge
rule, and the README's worked example extended by a vendor re-delivery.

The rule, for a row r of a load at known_at K (after the load's rows with the same key and known_at
collapse into one): Ks = the greatest stored known_at <= K of its key, p = the load's own row of the
key with the greatest known_at < K.

* p exists and (no Ks or p.known_at >= Ks): a duplicate iff r equals p, else a new version;
* else Ks exists, cur = the newest stored version at (key, Ks): r equal to cur is a duplicate; else,
  unless the load re-asserts, r equal to another stored version at (key, Ks) (or to an outranked one)
  is a duplicate *re-sent*; else r is new: kept as an outranked version when K == Ks, precedence is
  not overruled and the load's feed ranks below cur's, otherwise stored ("revised");
* else r is stored ("inserted" for a key never seen, else "revised").

The property tests (tests/timeseries/test_pit_oracle.py) check the same against the oracle at random.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from ingestion.loader import LoadResult, ingest_file, ingest_table
from ingestion.models import Load
from tests.helpers import T0, bar, csv_bytes, stored_versions
from tests.histories import outranked_versions, resent_rows
from timeseries import pit
from timeseries.cache import generations

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)
KNOWN = T0 + MINUTE  # a bar's known_at when none is given: its close (time + 1 minute)
LATER = T0 + timedelta(hours=1)
AFTER = T0 + timedelta(hours=2)  # after every known_at below


@pytest.fixture
def ranks(settings):
    """Sets the market_data feed precedence (highest first) for the test."""

    def set_ranks(*feeds: str) -> None:
        settings.TSM_FEED_PRECEDENCE = {**settings.TSM_FEED_PRECEDENCE, "market_data": tuple(feeds)}

    return set_ranks


def load(close: str, feed: str = "", *, known_at: datetime | None = None, **options) -> LoadResult:
    """The AAPL bar at T0 through ingest_table."""
    extra = {"known_at": known_at.isoformat()} if known_at else {}
    return ingest_table(dataset="market_data", data=[bar("AAPL", 0, close=close, **extra)], feed=feed, **options)


def counts(result: LoadResult) -> tuple[int, int, int, int, int]:
    """(inserted, revised, duplicates, resent, outranked)."""
    return result.inserted, result.revised, result.duplicates, result.resent, result.outranked


def close_at(at: datetime, recorded_by: datetime | None = None, minute: int = 0) -> Decimal | None:
    """The close of the AAPL bar at T0 + ``minute`` as of ``at`` (as recorded by ``recorded_by``)."""
    time = T0 + timedelta(minutes=minute)
    rows = pit.history(dataset="market_data", at=at, symbols=["AAPL"], start=time, end=time, recorded_by=recorded_by)
    assert len(rows) <= 1
    return rows[0]["close"] if rows else None


def closes_stored() -> list[Decimal]:
    return sorted(v["close"] for v in stored_versions("market_data"))


def change_count() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM timeseries_change WHERE dataset = 'market_data'")
        return cur.fetchone()[0]


# --- re-sends ----------------------------------------------------------------------------------------


def test_a_re_send_of_the_current_version_is_a_plain_duplicate():
    load("10.5", "vendor_x")
    again = load("10.5", "vendor_x")
    assert counts(again) == (0, 0, 1, 0, 0)
    assert resent_rows("market_data", again.load_id) == []


def test_a_re_send_of_a_superseded_version_is_a_duplicate_counted_and_listed_as_re_sent():
    load("10.5", "vendor_x")
    fix = load("10.4", "curation")  # same key, same known_at, later recorded_at: the truth from now on
    changes, generation = change_count(), generations(["market_data"])

    again = load("10.5", "vendor_x")  # the vendor re-delivers its original value

    assert counts(again) == (0, 0, 1, 1, 0)
    assert resent_rows("market_data", again.load_id) == [
        {"key": ("AAPL", T0), "known_at": KNOWN, "kind": "superseded", "current_recorded_at": fix.recorded_at}
    ]
    assert closes_stored() == [Decimal("10.4"), Decimal("10.5")]  # nothing stored
    assert close_at(AFTER) == Decimal("10.4")  # the fix stays current
    assert change_count() == changes and generations(["market_data"]) == generation  # no answer changed
    assert Load.objects.get(pk=again.load_id).resent == 1


def test_a_value_superseded_at_an_earlier_known_at_is_a_re_send_when_sent_known_later():
    load("10.5", "vendor_x")
    load("10.4", "curation")
    # the vendor's original value again, now saying it was known an hour later: Ks is still KNOWN
    again = load("10.5", "vendor_x", known_at=LATER)
    assert counts(again) == (0, 0, 1, 1, 0)
    assert [(r["known_at"], r["kind"]) for r in resent_rows("market_data", again.load_id)] == [(LATER, "superseded")]
    assert close_at(AFTER) == Decimal("10.4")


def test_a_row_with_new_values_is_still_a_new_version():
    load("10.5", "vendor_x")
    load("10.4", "curation")
    news = load("10.6", "vendor_x")  # no precedence configured: new information wins
    assert counts(news) == (0, 1, 0, 0, 0)
    assert close_at(AFTER) == Decimal("10.6")


def test_a_key_never_seen_is_inserted_and_one_known_only_later_is_revised():
    first = load("10.5", known_at=LATER)
    earlier = load("10.4")  # known before the stored version: no Ks, no p, but the key has a version
    assert (counts(first), counts(earlier)) == ((1, 0, 0, 0, 0), (0, 1, 0, 0, 0))
    assert (close_at(KNOWN), close_at(AFTER)) == (Decimal("10.4"), Decimal("10.5"))


# --- a load's own earlier-known row (p) ---------------------------------------------------------------


def test_a_row_equal_to_the_loads_own_earlier_known_row_is_a_duplicate():
    rows = [bar("AAPL", 0, close="10.5"), bar("AAPL", 0, close="10.5", known_at=LATER.isoformat())]
    result = ingest_table(dataset="market_data", data=rows)
    assert counts(result) == (1, 0, 1, 0, 0)
    assert closes_stored() == [Decimal("10.5")]


def test_a_re_sent_file_with_two_known_ats_of_a_key_stores_nothing():
    """The later row is judged against the load's own earlier row (p), itself a re-send: not against the
    fix, which it would otherwise undo from its known_at on."""
    rows = [bar("AAPL", 0, close="10.5"), bar("AAPL", 0, close="10.5", known_at=LATER.isoformat())]
    ingest_table(dataset="market_data", data=rows, feed="vendor_x")  # stores one version (the second repeats it)
    load("10.4", "curation")

    again = ingest_table(dataset="market_data", data=rows, feed="vendor_x")

    assert counts(again) == (0, 0, 2, 1, 0)
    assert [(r["known_at"], r["kind"]) for r in resent_rows("market_data", again.load_id)] == [(KNOWN, "superseded")]
    assert (close_at(KNOWN), close_at(AFTER)) == (Decimal("10.4"), Decimal("10.4"))


def test_a_row_differing_from_the_loads_own_earlier_known_row_is_a_new_version():
    load("10.5")
    rows = [bar("AAPL", 0, close="10.5"), bar("AAPL", 0, close="10.6", known_at=LATER.isoformat())]
    result = ingest_table(dataset="market_data", data=rows)
    assert counts(result) == (0, 1, 1, 0, 0)
    assert (close_at(KNOWN), close_at(AFTER)) == (Decimal("10.5"), Decimal("10.6"))


# --- re-assertion -------------------------------------------------------------------------------------


def test_re_assertion_makes_a_superseded_version_current_again_and_keeps_the_fix_replayable():
    load("10.5", "vendor_x")
    fix = load("10.4", "curation")

    again = load("10.5", "vendor_x", reassert=True, requested_by="alice")

    assert counts(again) == (0, 1, 0, 0, 0)
    assert close_at(AFTER) == Decimal("10.5")
    assert close_at(AFTER, recorded_by=again.recorded_at - timedelta(microseconds=1)) == Decimal("10.4")
    assert close_at(AFTER, recorded_by=fix.recorded_at - timedelta(microseconds=1)) == Decimal("10.5")
    assert closes_stored() == [Decimal("10.4"), Decimal("10.5"), Decimal("10.5")]
    stored = Load.objects.get(pk=again.load_id)
    assert (stored.reassert, stored.requested_by, stored.feed) == (True, "alice", "vendor_x")


def test_re_asserting_the_current_value_is_a_duplicate():
    load("10.5", "vendor_x")
    assert counts(load("10.5", "vendor_x", reassert=True)) == (0, 0, 1, 0, 0)


def test_re_assertion_goes_through_ingest_file_too():
    content = csv_bytes([bar("AAPL", 0, close="10.5")])
    ingest_file(dataset="market_data", path=content, feed="vendor_x")
    load("10.4", "curation")
    assert counts(ingest_file(dataset="market_data", path=content, feed="vendor_x")) == (0, 0, 1, 1, 0)

    again = ingest_file(dataset="market_data", path=content, feed="vendor_x", reassert=True)

    assert counts(again) == (0, 1, 0, 0, 0) and close_at(AFTER) == Decimal("10.5")


# --- feed precedence ----------------------------------------------------------------------------------


def test_a_lower_ranked_feed_is_kept_as_an_outranked_version_and_changes_no_answer(ranks):
    ranks("curation", "vendor_x")
    load("10.5", "vendor_x")
    fix = load("10.4", "curation")
    changes, generation = change_count(), generations(["market_data"])

    other = load("10.6", "vendor_x")  # the vendor's new value for the same (key, known_at)

    assert counts(other) == (0, 0, 0, 0, 1)
    assert other.rows_read == 1
    assert closes_stored() == [Decimal("10.4"), Decimal("10.5")]
    assert close_at(AFTER) == Decimal("10.4")
    assert close_at(AFTER, recorded_by=other.recorded_at) == Decimal("10.4")
    assert change_count() == changes and generations(["market_data"]) == generation
    [kept] = outranked_versions("market_data")
    assert (kept["symbol"], kept["time"], kept["known_at"], kept["close"]) == ("AAPL", T0, KNOWN, Decimal("10.6"))
    assert (kept["feed"], kept["recorded_at"], kept["outranked_by"]) == ("vendor_x", other.recorded_at, fix.recorded_at)
    assert kept["load_id"] == other.load_id
    assert Load.objects.get(pk=other.load_id).outranked == 1


def test_a_re_send_of_an_outranked_version_is_re_sent_of_kind_outranked(ranks):
    ranks("curation", "vendor_x")
    load("10.5", "vendor_x")
    fix = load("10.4", "curation")
    load("10.6", "vendor_x")

    again = load("10.6", "vendor_x")

    assert counts(again) == (0, 0, 1, 1, 0)
    assert resent_rows("market_data", again.load_id) == [
        {"key": ("AAPL", T0), "known_at": KNOWN, "kind": "outranked", "current_recorded_at": fix.recorded_at}
    ]
    assert len(outranked_versions("market_data")) == 1


def test_precedence_applies_to_the_same_known_at_only(ranks):
    ranks("curation", "vendor_x")
    load("10.5", "vendor_x")
    load("10.4", "curation")

    later = load("10.6", "vendor_x", known_at=LATER)  # news known later: the as-of rule as ever

    assert counts(later) == (0, 1, 0, 0, 0)
    assert (close_at(KNOWN), close_at(AFTER)) == (Decimal("10.4"), Decimal("10.6"))


def test_a_higher_ranked_feed_takes_over_and_unlisted_feeds_rank_equal(ranks):
    ranks("curation")
    assert counts(load("10.5", "vendor_x")) == (1, 0, 0, 0, 0)
    assert counts(load("10.6", "vendor_y")) == (0, 1, 0, 0, 0)  # both unlisted: the newest wins
    assert counts(load("10.7", "")) == (0, 1, 0, 0, 0)  # the unnamed feed is unlisted too
    assert counts(load("10.4", "curation")) == (0, 1, 0, 0, 0)  # ranked above the unlisted
    assert counts(load("10.8", "vendor_x")) == (0, 0, 0, 0, 1)
    assert counts(load("10.8", "")) == (0, 0, 1, 1, 0)  # equal to the outranked version: a re-send
    assert close_at(AFTER) == Decimal("10.4")


def test_a_listed_feed_outranks_the_unnamed_feed(ranks):
    ranks("vendor_x")
    load("10.5", "")
    assert counts(load("10.6", "vendor_x")) == (0, 1, 0, 0, 0)
    assert counts(load("10.7", "")) == (0, 0, 0, 0, 1)
    assert close_at(AFTER) == Decimal("10.6")


def test_without_precedence_the_newest_version_wins(ranks):
    ranks()
    load("10.4", "curation")
    assert counts(load("10.6", "vendor_x")) == (0, 1, 0, 0, 0)
    assert close_at(AFTER) == Decimal("10.6")


def test_re_assertion_does_not_beat_precedence_but_overrule_does(ranks):
    ranks("curation", "vendor_x")
    load("10.5", "vendor_x")
    load("10.4", "curation")

    reasserted = load("10.5", "vendor_x", reassert=True)  # not a re-send (re-asserting): new, but ranked lower
    assert counts(reasserted) == (0, 0, 0, 0, 1)
    assert close_at(AFTER) == Decimal("10.4")

    overruled = load("10.5", "vendor_x", reassert=True, overrule=True)  # the admin's "make current again"
    assert counts(overruled) == (0, 1, 0, 0, 0)
    assert close_at(AFTER) == Decimal("10.5")


def test_the_rank_is_that_of_the_current_versions_feed(ranks):
    ranks("curation", "vendor_x")
    load("10.4", "curation")
    load("10.5", "vendor_x", reassert=True, overrule=True)  # current now: a vendor_x version
    assert counts(load("10.6", "vendor_x")) == (0, 1, 0, 0, 0)  # equal rank: the newest wins
    assert close_at(AFTER) == Decimal("10.6")


# --- the README's worked example, extended by a vendor re-delivery -------------------------------------

BAR = 60  # the 15:30 bar (T0 is 14:30)
AT_1600 = T0 + timedelta(minutes=90)
AT_1800 = T0 + timedelta(hours=3, minutes=30)
AT_1900 = T0 + timedelta(hours=4, minutes=30)


def bar_1530(close: str, known_at: datetime | None = None) -> dict:
    extra = {"known_at": known_at.isoformat()} if known_at else {}
    return bar("AAPL", BAR, close=close, open="187.00", high="187.50", low="186.90", **extra)


def load_1530(close: str, feed: str, known_at: datetime | None = None, **options) -> LoadResult:
    return ingest_table(dataset="market_data", data=[bar_1530(close, known_at)], feed=feed, **options)


def test_the_worked_example_survives_a_vendor_re_delivery(ranks):
    """The 15:30 AAPL bar arrives with close 187.20 (known 15:31); the exchange corrects it to 187.05
    (known 18:00); our fix re-sends the bar with 187.10 and no known_at (known 15:31 again). Then the
    vendor re-delivers both of its files: nothing changes, the original is reported re-sent."""
    ranks()  # no precedence: the re-delivery alone must not undo the fix
    original = csv_bytes([bar_1530("187.20")])
    correction = csv_bytes([bar_1530("187.05", known_at=AT_1800)])
    first = ingest_file(dataset="market_data", path=original, feed="vendor_x")
    ingest_file(dataset="market_data", path=correction, feed="vendor_x")
    fix = load_1530("187.10", "curation")

    def answers(recorded_by=None):
        return [close_at(at, recorded_by, minute=BAR) for at in (AT_1600, AT_1900)]

    assert answers() == [Decimal("187.10"), Decimal("187.05")]
    assert answers(recorded_by=fix.recorded_at - timedelta(microseconds=1)) == [Decimal("187.20"), Decimal("187.05")]

    again = ingest_file(dataset="market_data", path=original, feed="vendor_x")  # was: revised 1, fix undone
    corrected_again = ingest_file(dataset="market_data", path=correction, feed="vendor_x")

    assert counts(again) == (0, 0, 1, 1, 0) and again.replay_of is None  # the fix overlaps: merged
    assert [r["kind"] for r in resent_rows("market_data", again.load_id)] == ["superseded"]
    assert counts(corrected_again) == (0, 0, 1, 0, 0)  # the correction is current at 18:00: a duplicate
    assert answers() == [Decimal("187.10"), Decimal("187.05")]
    assert answers(recorded_by=fix.recorded_at - timedelta(microseconds=1)) == [Decimal("187.20"), Decimal("187.05")]
    assert len(stored_versions("market_data")) == 3

    third = ingest_file(dataset="market_data", path=original, feed="vendor_x")  # nothing changed since
    assert third.replay_of == again.load_id and counts(third) == (0, 0, 1, 1, 0)
    assert first.replay_of is None


def test_the_worked_example_with_precedence_keeps_the_fix_against_a_new_vendor_value(ranks):
    """With curation ranked above the vendor, the vendor's *new* value for the same known_at (187.25) is
    kept as outranked: as of 16:00 the answer stays our fix. Re-asserted by the admin (overrule), the
    vendor's value becomes current; as recorded before that, the fix."""
    ranks("curation", "vendor_x")
    ingest_file(dataset="market_data", path=csv_bytes([bar_1530("187.20")]), feed="vendor_x")
    load_1530("187.05", "vendor_x", known_at=AT_1800)
    fix = load_1530("187.10", "curation")

    other = ingest_file(dataset="market_data", path=csv_bytes([bar_1530("187.25")]), feed="vendor_x")

    assert counts(other) == (0, 0, 0, 0, 1)
    assert [(o["close"], o["outranked_by"]) for o in outranked_versions("market_data")] == [
        (Decimal("187.25"), fix.recorded_at)
    ]
    assert close_at(AT_1600, minute=BAR) == Decimal("187.10")
    assert close_at(AT_1900, minute=BAR) == Decimal("187.05")  # the 18:00 correction: a later known_at

    made_current = load_1530("187.25", "vendor_x", reassert=True, overrule=True, requested_by="admin")
    assert counts(made_current) == (0, 1, 0, 0, 0)
    assert close_at(AT_1600, minute=BAR) == Decimal("187.25")
    assert close_at(AT_1600, made_current.recorded_at - timedelta(microseconds=1), minute=BAR) == Decimal("187.10")
