"""The definitions of the engagement analytics, in one place (the README's Analytics section points here).

Deliveries (``messages``)
    One row of ``messages`` is one delivery. A delivery's counts are placed on the day (and week) it was
    **created**, in UTC unless a time zone is given: its open, click or conversion counts toward the day it
    was sent, not the day it happened, so every rate compares the same deliveries (cohort rates, never
    above 100%). A count is the number of deliveries whose ``metrics`` hold that timestamp: Customer.io
    keeps the first time of each metric per delivery, so ``opened`` is *unique* opens (deliveries opened at
    least once), ``clicked`` unique clicks, and so on. Rows marked ``_cio_deleted_at`` are left out.
Rates
    A rate is a share of the deliveries in its denominator: its numerator counts only deliveries that hold
    **both** metrics (``opened_of_delivered``: deliveries delivered and opened), so every rate is between 0
    and 1 whatever mix of channels it sums. This matters because not every channel reports every step:
    Customer.io reports no delivery for in-app messages (``sent`` then ``opened``, never ``delivered``),
    and SMS (twilio) reports clicks without opens. ``opened`` and ``clicked`` still count every unique open
    and click (in-app ones too), but the open, click-through, conversion and unsubscribe rates are over
    ``delivered`` deliveries and count only their opens, clicks...: an in-app message is "opened" as soon
    as it is displayed, and its ``sent`` only means it was created, not that it reached a device
    (https://docs.customer.io/journeys/in-app-metrics/), so an in-app open is a display, not an email
    open, and neither in-app metric is a fair denominator next to email's ``delivered``. Mixing in-app
    opens (whose deliveries are missing from ``delivered``) into a campaign's open rate once made "Spring
    Sale" open 101% of what it delivered. So a campaign's open rate is the one a marketer compares across
    campaigns and with Customer.io's email and push open rates; an in-app-only row has no open rate
    (NULL: nothing delivered) and a delivery rate of 0. Click-to-open is clicks of opened deliveries over
    opened, delivery rate delivered-and-sent over sent, bounce rate bounced-and-sent over sent. The
    numerators are columns of their own (``<numerator>_of_<denominator>``) so the weekly and campaign
    tables recompute rates from sums.
Activities (``activities``)
    One row is one activity (an event such as ``email_opened``, a page view, ``sent_email``...), placed on
    the day of its ``timestamp``. ``people`` counts distinct people (``cio_id``, else ``customer_id``) per
    day, activity type and name.
Weeks
    Start on Monday (ISO weeks), in the same time zone as days.
Campaign performance
    Per campaign, broadcast, newsletter and transactional message: lifetime counts and rates, and the same
    for the last 30 days (the 30 days ending with the dataset's newest day). The reconciliation compares
    each ``*_metrics`` series (period ``days``) summed over its window with the deliveries counted from
    ``messages`` over the same days. The metrics endpoints count a metric on the day it happened (v2
    campaign metrics in UTC, the others in America/New_York), ``messages`` counts it on the day its delivery
    was created: small differences at the window's edges are expected, large ones are worth a look.
Daily series
    ``messages.<count>`` (every count below, summed over the workspace) and ``activity.<type>`` or
    ``activity.<type>:<name>`` (events). A series runs from its first day to the *as-of day*, the day
    before the newest day in the dataset (the newest day is taken as partial: the load ran during it);
    days without rows count 0.
Anomalies
    ``spike``: a day above the trailing mean + k standard deviations of the ``window`` days before it (no
    look-ahead; days already flagged as spikes are left out of later baselines, so one spike does not
    hide the next), with a minimum volume: the day must also be at least ``min_excess`` (default 5) above
    that mean, and the standard deviation is taken as at least the square root of the mean (the Poisson
    noise of a count; ``poisson_floor``). Without that, a series of 0-3 a day "spikes" on every 2 or 3
    and a flat series on every small wobble. ``outlier_high`` / ``outlier_low``: |z| >= z of the whole
    series (the seed's z-score).
Forecasts
    The next 28 days of every daily series with at least 14 days of history, with weekly seasonality: ETS
    (additive error, no trend, additive weekly season) with statsmodels (``pip install
    customerio-source[analytics]``), a seasonal-naive forecast without it. Both fit the series with its
    anomaly days (spikes and outliers), and any other day more than 4 robust deviations (1.4826 x MAD, at
    least 1 and at least the square root of the series' median) from it, replaced by the median of the
    same weekday in the 4 weeks either side: a broadcast day is not normal variability, and left in it
    would widen every interval several times over (the second rule catches broadcast days the trailing
    spike rule cannot judge, in its first ``window`` days). Bounds are 80% and 95% prediction intervals
    of normal days, clipped at 0. The backtest fits on all but the last 28 days and forecasts them: MAPE
    (over days with a non-zero actual) and MASE (mean absolute error over that of the in-sample
    seasonal-naive forecast, lag 7; below 1 beats seasonal naive), both over the backtest days that are
    not anomalies (its ``actual`` column keeps every day).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Count:
    """A count of deliveries: those whose ``metrics`` hold ``metric``."""

    name: str
    metric: str
    description: str


@dataclass(frozen=True)
class Rate:
    """Deliveries holding both counts' metrics over those holding the denominator's (NULL when none do)."""

    name: str
    numerator: str
    denominator: str
    description: str

    @property
    def counted(self) -> str:
        """The column of the rate's numerator: deliveries counted by both ``numerator`` and ``denominator``."""
        return f"{self.numerator}_of_{self.denominator}"


COUNTS: tuple[Count, ...] = (
    Count("attempted", "attempted", "deliveries attempted"),
    Count("sent", "sent", "deliveries sent"),
    Count("delivered", "delivered", "deliveries delivered"),
    Count("opened", "opened", "unique opens: deliveries opened at least once"),
    Count("human_opened", "human_opened", "unique opens Customer.io attributes to a person (where present)"),
    Count("clicked", "clicked", "unique clicks: deliveries clicked at least once"),
    Count("converted", "converted", "deliveries that converted"),
    Count("bounced", "bounced", "deliveries that bounced"),
    Count("spammed", "spammed", "deliveries reported as spam"),
    Count("unsubscribed", "unsubscribed", "deliveries whose recipient unsubscribed from them"),
    Count("failed", "failed", "deliveries that failed"),
)
COUNT_NAMES = tuple(count.name for count in COUNTS)

RATES: tuple[Rate, ...] = (
    Rate("delivery_rate", "delivered", "sent", "delivered / sent"),
    Rate("open_rate", "opened", "delivered", "unique opens of delivered deliveries / delivered"),
    Rate("human_open_rate", "human_opened", "delivered", "human unique opens of delivered deliveries / delivered"),
    Rate("click_rate", "clicked", "delivered", "click-through: unique clicks of delivered deliveries / delivered"),
    Rate("click_to_open_rate", "clicked", "opened", "click-to-open: unique clicks of opened deliveries / opened"),
    Rate("conversion_rate", "converted", "delivered", "conversions of delivered deliveries / delivered"),
    Rate("unsubscribe_rate", "unsubscribed", "delivered", "unsubscribes of delivered deliveries / delivered"),
    Rate("bounce_rate", "bounced", "sent", "bounces of sent deliveries / sent"),
)
RATE_COUNT_NAMES = tuple(rate.counted for rate in RATES)
"""The rates' numerators, counted alongside :data:`COUNTS` (``opened_of_delivered``...)."""

FUNNEL = ("sent", "delivered", "opened", "clicked", "converted")
"""The report's funnel, in order."""

SOURCE_TYPES = (
    # source_type, column of `messages`, name table, its metrics table, that table's id column
    ("campaign", "campaign_id", "campaigns", "campaign_metrics", "campaign_id"),
    ("broadcast", "broadcast_id", "broadcasts", "broadcast_metrics", "broadcast_id"),
    ("newsletter", "newsletter_id", "newsletters", "newsletter_metrics", "newsletter_id"),
    (
        "transactional",
        "transactional_message_id",
        "transactional_messages",
        "transactional_metrics",
        "transactional_id",
    ),
)
"""What sent a delivery: one of these ids is set on every ``messages`` row."""

RECONCILED = ("sent", "delivered", "opened", "clicked", "converted", "bounced", "unsubscribed")
"""The counts compared with the ``*_metrics`` series."""

LAST_DAYS = 30
"""``*_30d`` columns of campaign_performance: the 30 days ending with the dataset's newest day."""

# models, in build order (each reads only tables before it or source tables)
ENGAGEMENT_DAILY = "engagement_daily"
ENGAGEMENT_WEEKLY = "engagement_weekly"
ACTIVITY_DAILY = "activity_daily"
CAMPAIGN_PERFORMANCE = "campaign_performance"
RECONCILIATION = "campaign_metrics_reconciliation"
ANOMALIES = "engagement_anomalies"
FORECAST = "engagement_forecast"
SERIES = "engagement_series"
"""One row per daily series: its days, total, forecast model, or why it has no forecast."""

SPIKE_K = 2.0
SPIKE_WINDOW = 28
SPIKE_MIN_EXCESS = 5.0
"""A spike is at least this many (deliveries, events) above its trailing mean."""
SPIKE_POISSON_FLOOR = True
"""The spike rule's standard deviation is at least the square root of the trailing mean."""
CLEAN_WEEKS = 4
"""Forecasts replace an anomaly day by the median of the same weekday in this many weeks either side."""
CLEAN_DEVIATIONS = 4.0
"""Forecasts also replace a day this many robust deviations from that median."""
OUTLIER_Z = 3.0
HORIZON = 28
MIN_HISTORY = 14
BACKTEST_DAYS = 28
SEASON = 7
INTERVALS = (80, 95)
