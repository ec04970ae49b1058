"""A seeded, vectorised generator of the demo's events, churn labels and rows to score.

The generative story (everything drawn from one ``numpy.random.Generator(seed)``):

1. Each customer belongs to a segment — ``casual`` (55 %), ``regular`` (35 %) or ``power``
   (10 %) — that sets both how often they buy (a relative rate of 0.5, 1.2, 3) and how much
   (a log-normal amount with median ≈ 12, 25, 60), and which categories they favour.
2. Within a segment, a customer's base daily rate varies by a Gamma(2, ½) factor and their
   typical spend by a log-normal factor: some customers are naturally quiet.
3. About 45 % of customers churn at some day drawn uniformly over ``[0, 1.4 · days)`` (the
   rest never churn in the data). During the ``decay`` days (20–60, per customer) before their
   churn day their rate falls linearly to zero and their baskets shrink (to ~50 %); after it
   they have no events at all. That decline is the learnable signal: falling 7- and 30-day
   counts against the 90-day count, and falling mean amounts, announce churn.
4. Each day's number of events is Poisson(rate · weekday factor); the rates are scaled so
   the expected number of events per customer is ``mean_events_per_customer``. Event times are
   uniform within their day (microseconds, UTC); amounts are positive and rounded to cents.
5. Noise that keeps the problem honest: 1.5 times a year on average a customer takes an
   unannounced break of 10–45 days with no events and no warning (a quiet spell that is not
   churn, or a "churn" label that nothing announced).

Labels: an ``as_of`` at midnight UTC every ``label_every_days`` days, starting once 90 days of
history exist (so 90-day windows are full) and only while ``churn_horizon_days`` of data remain
after it. A customer gets a label row at an ``as_of`` only if they had an event in the 90 days
before it (a churn label is about customers who are still active); ``churned = 1`` when they
have no event in ``[as_of, as_of + horizon)``. The label is computed from the very day counts the
events were drawn from, so it agrees exactly with the events table.

``to_score`` holds every customer as of midnight of the day after the last day of data.

Guarantees: same conf → identical tables; ``events`` sorted by ``(customer_id, event_time)``;
``labels`` sorted by ``(as_of, customer_id)``; the Arrow schemas below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from engine.conf import DemoConf
from engine.errors import ConfError

if TYPE_CHECKING:
    from engine.run_context import RunContext

HISTORY_DAYS = 90
"""Days of history before the first label, so that the longest (90-day) window is full."""

SEGMENTS = ("casual", "regular", "power")
SEGMENT_SHARE = np.array([0.55, 0.35, 0.10])
SEGMENT_RATE = np.array([0.5, 1.2, 3.0])
SEGMENT_LOG_AMOUNT = np.log(np.array([12.0, 25.0, 60.0]))
CATEGORIES = ("grocery", "dining", "electronics", "travel", "fashion")
# Category preference per segment (rows sum to 1).
CATEGORY_MIX = np.array([
    [0.55, 0.25, 0.05, 0.05, 0.10],
    [0.35, 0.25, 0.15, 0.10, 0.15],
    [0.20, 0.20, 0.25, 0.20, 0.15],
])
CHURN_SHARE = 0.45
WEEKDAY_FACTOR = np.array([0.9, 0.9, 0.95, 1.0, 1.15, 1.25, 0.85])  # Monday .. Sunday
US_PER_DAY = 86_400_000_000
PAUSES_PER_YEAR = 1.5
PAUSE_DAYS = (10, 45)

TS = pa.timestamp("us", tz="UTC")
EVENTS_SCHEMA = pa.schema([("customer_id", pa.int64()), ("event_time", TS),
                           ("amount", pa.float64()), ("category", pa.string())])
LABELS_SCHEMA = pa.schema([("customer_id", pa.int64()), ("as_of", TS), ("churned", pa.int64())])
TO_SCORE_SCHEMA = pa.schema([("customer_id", pa.int64()), ("as_of", TS)])


@dataclass(frozen=True)
class DemoData:
    """The three demo tables, as Arrow tables with the module's schemas."""

    events: pa.Table
    labels: pa.Table
    to_score: pa.Table


def label_days(conf: DemoConf) -> list[int]:
    """Day offsets (from ``conf.start``) of the label times: every ``label_every_days`` from day
    90 while ``day + churn_horizon_days <= days`` (the horizon lies entirely inside the data)."""
    return list(range(HISTORY_DAYS, conf.days - conf.churn_horizon_days + 1, conf.label_every_days))


def _check(conf: DemoConf) -> datetime:
    try:
        start = datetime.fromisoformat(conf.start)
    except ValueError as exc:
        raise ConfError(f"demo.start: {conf.start!r} is not an ISO date (e.g. 2025-01-01)") from exc
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    start = start.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if conf.customers < 1:
        raise ConfError(f"demo.customers must be at least 1, got {conf.customers}")
    if conf.mean_events_per_customer <= 0:
        raise ConfError("demo.mean_events_per_customer must be positive, got "
                        f"{conf.mean_events_per_customer}")
    if conf.label_every_days < 1 or conf.churn_horizon_days < 1:
        raise ConfError("demo.label_every_days and demo.churn_horizon_days must be at least 1, got "
                        f"{conf.label_every_days} and {conf.churn_horizon_days}")
    if not label_days(conf):
        raise ConfError(
            f"demo.days = {conf.days} leaves no label time: labels need {HISTORY_DAYS} days of history "
            f"plus demo.churn_horizon_days = {conf.churn_horizon_days}; use at least "
            f"{HISTORY_DAYS + conf.churn_horizon_days} days")
    return start


def _daily_rates(rng: np.random.Generator, conf: DemoConf, segment: np.ndarray,
                 start: datetime) -> tuple[np.ndarray, np.ndarray]:
    """Expected events per (customer, day) and the basket-size factor per (customer, day)."""
    n, days = conf.customers, conf.days
    base = SEGMENT_RATE[segment] * rng.gamma(2.0, 0.5, size=n)
    churns = rng.random(n) < CHURN_SHARE
    churn_day = np.where(churns, rng.uniform(0, 1.4 * days, size=n), np.inf)
    decay = rng.uniform(20, 60, size=n)
    day = np.arange(days, dtype=np.float64)[None, :]
    # 1 long before churn, falling linearly to 0 at the churn day, 0 after it.
    alive = np.clip((churn_day[:, None] - day) / decay[:, None], 0.0, 1.0)
    weekday = WEEKDAY_FACTOR[(np.arange(days) + start.weekday()) % 7][None, :]
    rate = base[:, None] * alive * weekday * ~_pauses(rng, n, days)
    rate *= conf.mean_events_per_customer * n / rate.sum()
    basket = 0.5 + 0.5 * alive
    return rate, basket


def _pauses(rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    """(customer, day) mask of unannounced breaks (holidays, a card left in a drawer)."""
    per_customer = rng.poisson(PAUSES_PER_YEAR * days / 365.0, size=n)
    who = np.repeat(np.arange(n), per_customer)
    begin = rng.integers(0, days, size=len(who))
    end = np.minimum(begin + rng.integers(PAUSE_DAYS[0], PAUSE_DAYS[1] + 1, size=len(who)), days)
    edges = np.zeros((n, days + 1), dtype=np.int32)
    np.add.at(edges, (who, begin), 1)
    np.add.at(edges, (who, end), -1)
    return np.cumsum(edges, axis=1)[:, :days] > 0


def generate_demo(conf: DemoConf) -> DemoData:
    """Generate the demo tables for ``conf`` (deterministic for ``conf.seed``)."""
    start = _check(conf)
    rng = np.random.default_rng(conf.seed)
    n, days = conf.customers, conf.days
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARE)
    spend = SEGMENT_LOG_AMOUNT[segment] + rng.normal(0.0, 0.35, size=n)
    rate, basket = _daily_rates(rng, conf, segment, start)
    counts = rng.poisson(rate)  # (customer, day)

    cell = np.repeat(np.arange(n * days), counts.ravel())
    customer, day = np.divmod(cell, days)
    m = len(cell)
    start_us = int(start.timestamp()) * 1_000_000
    time_us = start_us + day * US_PER_DAY + rng.integers(0, US_PER_DAY, size=m)
    log_amount = spend[customer] + np.log(basket[customer, day]) + rng.normal(0.0, 0.6, size=m)
    amount = np.maximum(np.round(np.exp(log_amount), 2), 0.01)
    # Category: inverse-CDF sampling from the customer's segment mix, vectorised.
    cdf = np.cumsum(CATEGORY_MIX, axis=1)[segment[customer]]
    category = np.minimum((rng.random(m)[:, None] > cdf).sum(axis=1), len(CATEGORIES) - 1)
    order = np.lexsort((time_us, customer))
    customer_id = customer[order].astype(np.int64) + 1
    events = pa.Table.from_arrays([
        pa.array(customer_id, pa.int64()),
        pa.array(time_us[order], pa.int64()).cast(TS),
        pa.array(amount[order], pa.float64()),
        pa.DictionaryArray.from_arrays(category[order].astype(np.int32),
                                       pa.array(CATEGORIES)).cast(pa.string()),
    ], schema=EVENTS_SCHEMA)

    ids, as_ofs, churned = [], [], []
    horizon = conf.churn_horizon_days
    for d in label_days(conf):
        active = counts[:, d - HISTORY_DAYS:d].sum(axis=1) > 0
        quiet = counts[:, d:d + horizon].sum(axis=1) == 0
        idx = np.flatnonzero(active)
        ids.append(idx + 1)
        as_ofs.append(np.full(len(idx), start_us + d * US_PER_DAY, dtype=np.int64))
        churned.append(quiet[idx].astype(np.int64))
    labels = pa.Table.from_arrays([
        pa.array(np.concatenate(ids).astype(np.int64), pa.int64()),
        pa.array(np.concatenate(as_ofs), pa.int64()).cast(TS),
        pa.array(np.concatenate(churned), pa.int64()),
    ], schema=LABELS_SCHEMA)

    to_score = pa.Table.from_arrays([
        pa.array(np.arange(1, n + 1, dtype=np.int64), pa.int64()),
        pa.array(np.full(n, start_us + days * US_PER_DAY, dtype=np.int64), pa.int64()).cast(TS),
    ], schema=TO_SCORE_SCHEMA)
    return DemoData(events=events, labels=labels, to_score=to_score)


# --- writing the demo tables ----------------------------------------------------------------

def demo_hash(conf: DemoConf) -> str:
    """What the demo tables were generated from: equal hashes, identical tables."""
    import dataclasses
    import hashlib
    import json

    return hashlib.sha256(json.dumps(dataclasses.asdict(conf), sort_keys=True).encode()).hexdigest()[:16]


def write_demo_tables(ctx: RunContext) -> None:
    """Generate the demo's events, labels and rows to score (seeded) into Delta tables, one
    overwrite commit each through the storage layer (the tables' storage options, the
    conflict guard), tagged with ``demo_hash``.

    Skipped when the tables already hold data generated from the same demo conf, so a second
    ``make demo`` reuses them; a changed size or seed regenerates all three."""
    from engine.run_context import INPUT_TABLES
    from engine.storage import snapshots
    from engine.storage.arrow import write_arrow
    from engine.storage.table import CommitInfo, WriteMode, WriteResult

    wanted = demo_hash(ctx.conf.demo)
    with ctx.stage("generate", "deltalake") as record:
        refs = {name: ctx.table(name) for name in INPUT_TABLES}
        found = {name: snapshots.open_table(ref) for name, ref in refs.items()}
        if all(d is not None and d.history(1)[0].get("lakescore.demo_hash") == wanted
               for d in found.values()):
            record.note = "demo tables already generated with this conf; reused"
            for name, ref in refs.items():
                ctx.record_write(WriteResult(table=ref, version=found[name].version(), rows=0,
                                             files=0, skipped=True))
            return
        data = generate_demo(ctx.conf.demo)
        tables = {"events": data.events, "labels": data.labels, "to_score": data.to_score}
        commit = CommitInfo(job="generate", run_id=ctx.run_id, engine="deltalake",
                            metadata={"demo_hash": wanted})
        for name, arrow in tables.items():
            ctx.record_write(write_arrow(arrow, refs[name], WriteMode.OVERWRITE, commit))
        record.note = f"{data.events.num_rows:,} events, {data.labels.num_rows:,} labels"
