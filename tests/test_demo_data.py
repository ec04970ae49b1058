"""The demo generator: deterministic, the documented schemas, labels that agree with the events
(checked independently with DuckDB), and a churn signal that windowed features can learn."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from engine.conf import DemoConf
from engine.demo_data import (EVENTS_SCHEMA, HISTORY_DAYS, LABELS_SCHEMA, TO_SCORE_SCHEMA,
                              generate_demo)
from engine.errors import ConfError
from engine.training.metrics import roc_auc

SMALL = DemoConf(customers=800, days=240, mean_events_per_customer=80.0, label_every_days=20,
                 churn_horizon_days=30, seed=3)
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def small():
    return generate_demo(SMALL)


def test_same_seed_gives_identical_tables(small):
    again = generate_demo(SMALL)
    assert again.events.equals(small.events)
    assert again.labels.equals(small.labels)
    assert again.to_score.equals(small.to_score)


def test_other_seed_gives_other_events(small):
    other = generate_demo(DemoConf(**{**SMALL.__dict__, "seed": 4}))
    assert not other.events.equals(small.events)


def test_tables_have_the_documented_schemas(small):
    assert small.events.schema == EVENTS_SCHEMA
    assert small.labels.schema == LABELS_SCHEMA
    assert small.to_score.schema == TO_SCORE_SCHEMA
    assert EVENTS_SCHEMA.field("event_time").type == pa.timestamp("us", tz="UTC")


def test_events_are_sorted_by_customer_then_time_and_lie_inside_the_data_range(small):
    frame = small.events.to_pandas()
    assert frame.equals(frame.sort_values(["customer_id", "event_time"], kind="stable"))
    assert frame["event_time"].min() >= START
    assert frame["event_time"].max() < START + timedelta(days=SMALL.days)


def test_amounts_are_positive_cents_and_categories_are_few(small):
    frame = small.events.to_pandas()
    assert (frame["amount"] > 0).all()
    assert np.allclose(frame["amount"] * 100, np.round(frame["amount"] * 100), atol=1e-6)
    assert 2 <= frame["category"].nunique() <= 6
    assert frame.notna().all().all()


def test_label_times_are_midnights_every_n_days_after_90_days_with_a_full_horizon(small):
    as_ofs = sorted(small.labels.column("as_of").unique().to_pylist())
    assert as_ofs[0] == START + timedelta(days=HISTORY_DAYS)
    assert all(b - a == timedelta(days=SMALL.label_every_days) for a, b in zip(as_ofs, as_ofs[1:]))
    assert all(t.hour == t.minute == t.second == t.microsecond == 0 for t in as_ofs)
    end_of_data = START + timedelta(days=SMALL.days)
    assert as_ofs[-1] + timedelta(days=SMALL.churn_horizon_days) <= end_of_data
    # The next label time would lack a full horizon of data.
    assert as_ofs[-1] + timedelta(days=SMALL.label_every_days + SMALL.churn_horizon_days) > end_of_data


def test_churned_means_no_event_within_the_horizon_and_labels_are_for_active_customers(small):
    events, labels = small.events, small.labels  # noqa: F841 - read by DuckDB
    checked = duckdb.sql(f"""
        SELECT l.customer_id, l.as_of, l.churned,
               count(e.event_time) FILTER (WHERE e.event_time >= l.as_of
                   AND e.event_time < l.as_of + INTERVAL {SMALL.churn_horizon_days} DAY) AS ahead,
               count(e.event_time) FILTER (WHERE e.event_time < l.as_of
                   AND e.event_time >= l.as_of - INTERVAL {HISTORY_DAYS} DAY) AS before
        FROM labels l LEFT JOIN events e USING (customer_id)
        GROUP BY ALL""").df()
    assert len(checked) == small.labels.num_rows
    assert ((checked["ahead"] == 0).astype(int) == checked["churned"]).all()
    assert (checked["before"] > 0).all()
    assert set(checked["churned"]) == {0, 1}


def test_positive_rate_is_between_5_and_25_percent(small):
    rate = np.mean(small.labels.column("churned").to_numpy())
    assert 0.05 <= rate <= 0.25, rate


def test_to_score_holds_every_customer_as_of_the_day_after_the_data(small):
    frame = small.to_score.to_pandas()
    assert sorted(frame["customer_id"]) == list(range(1, SMALL.customers + 1))
    assert (frame["as_of"] == START + timedelta(days=SMALL.days)).all()


def test_recent_activity_predicts_churn(small):
    """The signal the demo promises: the 30-day event count alone ranks churners well."""
    events, labels = small.events, small.labels  # noqa: F841 - read by DuckDB
    counts = duckdb.sql("""
        SELECT l.churned, count(e.event_time) AS count_30d
        FROM labels l LEFT JOIN events e ON e.customer_id = l.customer_id
             AND e.event_time < l.as_of AND e.event_time >= l.as_of - INTERVAL 30 DAY
        GROUP BY l.customer_id, l.as_of, l.churned""").df()
    auc = roc_auc(counts["churned"], -counts["count_30d"])
    assert 0.7 < auc < 0.97, auc


def test_too_few_days_for_one_label_is_a_conf_error():
    with pytest.raises(ConfError, match=r"demo.days = 100 .* at least 120 days"):
        generate_demo(DemoConf(customers=10, days=100, churn_horizon_days=30))


def test_default_size_has_about_two_million_events():
    """Its size only: how long generating takes is for bench/ (``bench/e2e.py`` times the
    generate stage), not for a test."""
    conf = DemoConf()
    data = generate_demo(conf)
    expected = conf.customers * conf.mean_events_per_customer
    assert abs(data.events.num_rows - expected) < 0.02 * expected
