"""What a load tells about re-sent and outranked rows (ingestion.models.ResentRow, Load.resent /
Load.outranked), on the merge and on the replay shortcut, and where a version's feed comes from."""

from __future__ import annotations

from datetime import datetime

import pytest

from ingestion.loader import ingest_file, ingest_table
from ingestion.models import Load, ResentRow
from tests.helpers import bar, csv_bytes
from timeseries.models import MarketData, OutrankedVersion

pytestmark = pytest.mark.django_db

ORIGINAL = [bar(s, m) for s in ("AAPL", "MSFT") for m in range(4)]
FIXED = bar("MSFT", 2, close="10.25")


def key_of(row: dict) -> dict:
    return {"symbol": row["symbol"], "time": datetime.fromisoformat(row["time"]).isoformat()}


def listed(load_id) -> list[tuple[dict, str]]:
    return [(r.key, r.kind) for r in ResentRow.objects.filter(load_id=load_id).order_by("id")]


def current_close(row: dict) -> str:
    versions = MarketData.objects.filter(symbol=row["symbol"], time=datetime.fromisoformat(row["time"]))
    return str(versions.order_by("-known_at", "-recorded_at").first().close)


def test_a_re_delivery_after_a_fix_lists_the_fixed_keys_and_keeps_the_fix(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_bytes(csv_bytes(ORIGINAL))
    ingest_file(dataset="market_data", path=path)
    ingest_table(dataset="market_data", data=[FIXED], feed="curation")
    again = ingest_file(dataset="market_data", path=path)
    assert (again.duplicates, again.resent, again.revised) == (8, 1, 0)
    assert listed(again.load_id) == [(key_of(FIXED), "superseded")]
    assert Load.objects.get(pk=again.load_id).resent == 1
    assert current_close(FIXED) == "10.250000"


def test_the_replay_shortcut_lists_the_keys_its_earlier_load_listed(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_bytes(csv_bytes(ORIGINAL))
    ingest_file(dataset="market_data", path=path)
    ingest_table(dataset="market_data", data=[FIXED], feed="curation")
    first = ingest_file(dataset="market_data", path=path)  # the fix logged a change: the full path
    again = ingest_file(dataset="market_data", path=path)  # nothing changed since: the shortcut
    assert first.replay_of is None and again.replay_of == first.load_id
    assert (again.duplicates, again.resent) == (8, 1)
    assert listed(again.load_id) == listed(first.load_id) == [(key_of(FIXED), "superseded")]


def test_the_replay_shortcut_lists_the_rows_its_earlier_load_kept_as_outranked(tmp_path, settings):
    settings.TSM_FEED_PRECEDENCE = {**settings.TSM_FEED_PRECEDENCE, "market_data": ("curation", "vendor_x")}
    ingest_table(dataset="market_data", data=ORIGINAL, feed="curation")
    path = tmp_path / "vendor.csv"
    path.write_bytes(csv_bytes([*ORIGINAL[:3], FIXED]))
    sent = ingest_file(dataset="market_data", path=path, feed="vendor_x")
    assert (sent.outranked, sent.duplicates, sent.revised) == (1, 3, 0)
    assert OutrankedVersion.objects.get().load_id == sent.load_id
    again = ingest_file(dataset="market_data", path=path, feed="vendor_x")
    assert again.replay_of == sent.load_id
    assert (again.duplicates, again.resent, again.outranked) == (4, 1, 0)
    assert listed(again.load_id) == [(key_of(FIXED), "outranked")]
    assert current_close(FIXED) == "10.500000"


def test_a_version_s_load_is_the_load_of_its_dataset_and_recorded_at(settings):
    settings.TSM_FEED_PRECEDENCE = {**settings.TSM_FEED_PRECEDENCE, "market_data": ("curation",)}
    fix = ingest_table(dataset="market_data", data=[FIXED], feed="curation")
    load = Load.objects.get(pk=fix.load_id)
    assert (load.feed, load.recorded_at) == ("curation", fix.recorded_at)
    assert MarketData.objects.get().recorded_at == load.recorded_at
