"""The table catalogue: every table the source can load, read like the App API's table of contents.

Every table is declared here, once: endpoint, envelope, page size, key, interval field, timestamps,
per-parent path fields, metrics family. Regular tables are built by one generic mechanism
(:mod:`customerio_source.resources`): a list endpoint, or a per-parent endpoint read for every row of a
parent list. Irregular tables (people, deliveries in time windows, activities, metrics, objects,
suppressions) name their ``builder``, a function of :mod:`customerio_source.builders` that reads
everything else from here.

Page sizes are the spec's maxima. Where the spec names a ``limit`` without a maximum we send
``UNDOCUMENTED_PAGE_SIZE`` (an assumption; see the constant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from . import builders
from .builders import Builder

# The spec documents `limit` without a maximum on POST /v1/objects, sender identities and relationships.
# We assume 1000, like the people search (POST /v1/customers) that these endpoints mirror.
UNDOCUMENTED_PAGE_SIZE = 1000

METRIC_PERIODS = ("hours", "days", "weeks", "months")


@dataclass(frozen=True)
class TableSpec:
    """One destination table and the endpoint it comes from."""

    name: str
    path: str
    envelope: str
    primary_key: tuple[str, ...]
    parent: str | None = None
    """Name of the table whose rows drive this per-parent endpoint."""
    path_fields: dict[str, str] = field(default_factory=dict)
    """Path placeholder -> parent row field."""
    parent_columns: dict[str, str] = field(default_factory=dict)
    """Column added to each child row -> parent row field (the foreign key)."""
    page_size: int | None = None
    """Maximum `limit` for cursor-paginated endpoints; None = unpaginated (or the server decides)."""
    paginated: bool = False
    interval_field: str | None = None
    """The row field an interval filters on (`updated`/`updated_at` of lists, `timestamp` of activities);
    not the pagination cursor (the API's `next`/`start`, handled by the client)."""
    timestamps: tuple[str, ...] = ()
    """Unix-seconds fields loaded as UTC timestamps."""
    default: bool = True
    """Part of `--tables all`."""
    full_reread: bool = True
    """Read completely every run: rows that vanish get `_cio_deleted_at`."""
    builder: Builder | None = None
    """The hand-written resource builder of an irregular table (None: built from this declaration)."""
    metrics_family: str | None = None
    """Metrics tables: "v2" (explicit UTC window), "journey", "steps" (period/steps) or "links"."""
    merge: Literal["delete-insert", "in-place"] = "delete-insert"
    """How a big table merges into DuckDB (other destinations keep dlt's default, `delete-insert`):
    "in-place" (many rows re-read a run, few of them new or changed: new keys inserted, changed rows
    replaced, unchanged rows left alone; :mod:`customerio_source.in_place`)."""
    deletes_follow: str | None = None
    """Rows are marked deleted when the row with the same key is marked deleted in this table."""
    params: dict[str, str] = field(default_factory=dict)
    arrow_row: dict[str, str] = field(default_factory=dict)
    """Big tables: each row's fields and their kinds (int, text, timestamp, bool). Pages are then decoded
    straight into Arrow tables (:class:`~customerio_source.arrow_pages.PageDecoder`), with no Python object
    per value; unknown fields still arrive (inferred). Empty: rows are dicts."""
    page_lists: tuple[str, ...] = ()
    """Other top-level lists of strings each page holds next to the rows (`ids`): parsed, then dropped."""
    cost: str = "1 request"
    notes: str = ""

    @property
    def per_parent(self) -> bool:
        return self.parent is not None


def _t(*fields: str) -> tuple[str, ...]:
    return fields


CREATED_UPDATED = _t("created", "updated", "first_started")
CREATED_AT_UPDATED_AT = _t("created_at", "updated_at")
DELIVERY_TIMESTAMPS = _t("created")  # plus every value of `metrics`, handled in transform

_SPECS: list[TableSpec] = [
    # -- workspace-level lists ----------------------------------------------------------------------
    TableSpec("workspaces", "/v1/workspaces", "workspaces", ("id",)),
    TableSpec("campaigns", "/v1/campaigns", "campaigns", ("id",), interval_field="updated", timestamps=CREATED_UPDATED),
    TableSpec(
        "broadcasts",
        "/v1/broadcasts",
        "broadcasts",
        ("id",),
        interval_field="updated",
        timestamps=CREATED_UPDATED,
    ),
    TableSpec(
        "newsletters",
        "/v1/newsletters",
        "newsletters",
        ("id",),
        paginated=True,
        page_size=100,
        interval_field="updated",
        timestamps=_t("created", "updated", "sent_at"),
        params={"sort": "asc"},
        cost="ceil(newsletters / 100)",
    ),
    TableSpec(
        "segments",
        "/v1/segments",
        "segments",
        ("id",),
        interval_field="updated_at",
        timestamps=CREATED_AT_UPDATED_AT,
    ),
    TableSpec(
        "transactional_messages",
        "/v1/transactional",
        "messages",
        ("id",),
        interval_field="updated_at",
        timestamps=CREATED_AT_UPDATED_AT,
        notes="GET /v1/transactional returns its list under `messages`.",
    ),
    TableSpec(
        "exports",
        "/v1/exports",
        "exports",
        ("id",),
        interval_field="updated_at",
        timestamps=CREATED_AT_UPDATED_AT,
    ),
    TableSpec(
        "collections",
        "/v1/collections",
        "collections",
        ("id",),
        interval_field="updated_at",
        timestamps=CREATED_AT_UPDATED_AT,
    ),
    TableSpec(
        "snippets",
        "/v1/snippets",
        "snippets",
        ("name",),
        interval_field="updated_at",
        timestamps=_t("updated_at"),
    ),
    TableSpec(
        "sender_identities",
        "/v1/sender_identities",
        "sender_identities",
        ("id",),
        paginated=True,
        page_size=UNDOCUMENTED_PAGE_SIZE,
        params={"sort": "asc"},
        cost="ceil(senders / 1000)",
    ),
    TableSpec("subscription_topics", "/v1/subscription_topics", "topics", ("id",)),
    TableSpec("reporting_webhooks", "/v1/reporting_webhooks", "reporting_webhooks", ("id",)),
    TableSpec(
        "info_ip_addresses",
        "/v1/info/ip_addresses",
        "ip_addresses",
        ("ip",),
        builder=builders.ip_addresses,
        notes="The API returns bare strings; each becomes a row {ip}.",
    ),
    TableSpec("object_types", "/v1/object_types", "types", ("id",)),
    TableSpec(
        "esp_suppressions",
        "/v1/esp/suppression/{suppression_type}",
        "suppressions",
        ("suppression_type", "email"),
        builder=builders.suppressions,
        timestamps=_t("created"),
        cost="ceil(suppressions / 1000) per type (bounces, spam_reports)",
    ),
    TableSpec(
        "objects",
        "/v1/objects",
        "identifiers",
        ("object_type_id", "object_id"),
        builder=builders.objects,
        page_size=UNDOCUMENTED_PAGE_SIZE,
        cost="ceil(objects / 1000) per object type",
        notes="POST /v1/objects per object type, with a filter that matches every object.",
    ),
    TableSpec(
        "object_attributes",
        "/v1/objects/{object_type_id}/{object_id}/attributes",
        "object",
        ("object_type_id", "object_id"),
        builder=builders.objects,
        default=False,
        cost="1 per object (opt-in)",
    ),
    TableSpec(
        "object_relationships",
        "/v1/objects/{object_type_id}/{object_id}/relationships",
        "cio_relationships",
        ("object_type_id", "object_id", "cio_id"),
        builder=builders.objects,
        page_size=UNDOCUMENTED_PAGE_SIZE,
        paginated=True,
        default=False,
        cost="1+ per object (opt-in)",
    ),
    # -- children read for every parent, every run ----------------------------------------------------
    TableSpec(
        "campaign_actions",
        "/v1/campaigns/{campaign_id}/actions",
        "actions",
        ("id",),
        parent="campaigns",
        path_fields={"campaign_id": "id"},
        parent_columns={"campaign_id": "id"},
        paginated=True,
        interval_field="updated",
        timestamps=_t("created", "updated"),
        cost="1+ per campaign",
    ),
    TableSpec(
        "broadcast_actions",
        "/v1/broadcasts/{broadcast_id}/actions",
        "actions",
        ("id",),
        parent="broadcasts",
        path_fields={"broadcast_id": "id"},
        parent_columns={"broadcast_id": "id"},
        interval_field="updated",
        timestamps=_t("created", "updated"),
        cost="1 per broadcast",
    ),
    TableSpec(
        "broadcast_triggers",
        "/v1/broadcasts/{broadcast_id}/triggers",
        "triggers",
        ("id",),
        parent="broadcasts",
        path_fields={"broadcast_id": "id"},
        parent_columns={"broadcast_id": "id"},
        timestamps=_t("created_at", "processed_at"),
        cost="1 per broadcast",
    ),
    TableSpec(
        "newsletter_variants",
        "/v1/newsletters/{newsletter_id}/contents",
        "contents",
        ("id",),
        parent="newsletters",
        path_fields={"newsletter_id": "id"},
        parent_columns={"newsletter_id": "id"},
        timestamps=_t("created", "updated"),
        cost="1 per newsletter",
    ),
    TableSpec(
        "newsletter_test_groups",
        "/v1/newsletters/{newsletter_id}/test_groups",
        "test_groups",
        ("id",),
        parent="newsletters",
        path_fields={"newsletter_id": "id"},
        parent_columns={"newsletter_id": "id"},
        cost="1 per newsletter",
    ),
    TableSpec(
        "transactional_variants",
        "/v1/transactional/{transactional_id}/contents",
        "contents",
        ("id",),
        parent="transactional_messages",
        path_fields={"transactional_id": "id"},
        parent_columns={"transactional_message_id": "id"},
        timestamps=_t("created", "updated"),
        cost="1 per transactional message",
    ),
    TableSpec(
        "segment_dependencies",
        "/v1/segments/{segment_id}/used_by",
        "used_by",
        ("segment_id",),
        parent="segments",
        path_fields={"segment_id": "id"},
        parent_columns={"segment_id": "id"},
        cost="1 per segment",
    ),
    TableSpec(
        "segment_memberships",
        "/v1/segments/{segment_id}/membership",
        "identifiers",
        ("segment_id", "cio_id"),
        parent="segments",
        path_fields={"segment_id": "id"},
        parent_columns={"segment_id": "id"},
        paginated=True,
        page_size=30000,
        arrow_row={"id": "text", "email": "text", "cio_id": "text"},
        page_lists=("ids",),
        merge="in-place",
        cost="ceil(members / 30000) per segment",
    ),
    # -- people ---------------------------------------------------------------------------------------
    TableSpec(
        "customers",
        "/v1/customers",
        "identifiers",
        ("cio_id",),
        builder=builders.customers,
        page_size=1000,
        cost="ceil(people / 1000)",
        notes="Every person: POST /v1/customers with a filter that matches everyone.",
    ),
    TableSpec(
        "customer_attributes",
        "/v1/customers/attributes",
        "customers",
        ("cio_id",),
        builder=builders.customer_attributes,
        full_reread=False,
        deletes_follow="customers",
        cost="ceil(people / 100) on a full read; incremental: (new + changed people) / 100 + new activities / 100 "
        "(the log scan delivery tables share); --bulk exports: 1 export (~3 requests + polls)",
        notes="POST /v1/customers/attributes, 100 ids per request. Attributes land as one JSON column.",
    ),
    TableSpec(
        "customer_messages",
        "/v1/customers/{customer_id}/messages",
        "messages",
        ("id",),
        builder=builders.per_person,
        page_size=1000,
        paginated=True,
        timestamps=DELIVERY_TIMESTAMPS,
        full_reread=False,
        default=False,
        cost="1+ per person (opt-in: one request per person)",
    ),
    TableSpec(
        "customer_activities",
        "/v1/customers/{customer_id}/activities",
        "activities",
        ("id",),
        builder=builders.per_person,
        page_size=100,
        paginated=True,
        timestamps=_t("timestamp"),
        full_reread=False,
        default=False,
        cost="1+ per person (opt-in)",
    ),
    TableSpec(
        "customer_relationships",
        "/v1/customers/{customer_id}/relationships",
        "cio_relationships",
        ("cio_id", "object_type_id", "object_id"),
        builder=builders.per_person,
        page_size=UNDOCUMENTED_PAGE_SIZE,
        paginated=True,
        default=False,
        cost="1+ per person (opt-in)",
    ),
    TableSpec(
        "customer_segments",
        "/v1/customers/{customer_id}/segments",
        "segments",
        ("cio_id", "segment_id"),
        builder=builders.per_person,
        timestamps=CREATED_AT_UPDATED_AT,
        default=False,
        cost="1 per person (opt-in; `segment_memberships` is cheaper)",
    ),
    # -- deliveries, read by `created` in windows of at most 6 months ----------------------------------
    TableSpec(
        "messages",
        "/v1/messages",
        "messages",
        ("id",),
        builder=builders.deliveries,
        merge="in-place",
        page_size=1000,
        timestamps=DELIVERY_TIMESTAMPS,
        full_reread=False,
        cost="ceil(deliveries / 1000) per window; --bulk exports: 1 export per campaign, newsletter and "
        "transactional message per 360 days (+ broadcasts by API)",
    ),
    TableSpec(
        "campaign_messages",
        "/v1/campaigns/{campaign_id}/messages",
        "messages",
        ("id",),
        builder=builders.deliveries,
        merge="in-place",
        parent="campaigns",
        path_fields={"campaign_id": "id"},
        page_size=1000,
        timestamps=DELIVERY_TIMESTAMPS,
        full_reread=False,
        default=False,
        cost="1+ per campaign and window (a subset of `messages`)",
    ),
    TableSpec(
        "broadcast_messages",
        "/v1/broadcasts/{broadcast_id}/messages",
        "messages",
        ("id",),
        builder=builders.deliveries,
        merge="in-place",
        parent="broadcasts",
        path_fields={"broadcast_id": "id"},
        page_size=1000,
        timestamps=DELIVERY_TIMESTAMPS,
        full_reread=False,
        default=False,
        cost="1+ per broadcast and window (a subset of `messages`)",
    ),
    TableSpec(
        "newsletter_messages",
        "/v1/newsletters/{newsletter_id}/messages",
        "messages",
        ("id",),
        builder=builders.deliveries,
        merge="in-place",
        parent="newsletters",
        path_fields={"newsletter_id": "id"},
        page_size=1000,
        timestamps=DELIVERY_TIMESTAMPS,
        full_reread=False,
        default=False,
        cost="1+ per newsletter and window (a subset of `messages`)",
    ),
    TableSpec(
        "transactional_message_deliveries",
        "/v1/transactional/{transactional_id}/messages",
        "messages",
        ("id",),
        builder=builders.deliveries,
        merge="in-place",
        parent="transactional_messages",
        path_fields={"transactional_id": "id"},
        page_size=1000,
        timestamps=DELIVERY_TIMESTAMPS,
        full_reread=False,
        default=False,
        cost="1+ per transactional message and window",
    ),
    # -- activities: newest first, 30-day retention, no time filter ----------------------------------
    TableSpec(
        "activities",
        "/v1/activities",
        "activities",
        ("id",),
        builder=builders.activities,
        page_size=100,
        interval_field="timestamp",
        timestamps=_t("timestamp"),
        full_reread=False,
        cost="ceil(new activities / 100)",
        notes="Stops paging at the watermark; history accumulates past 30 days.",
    ),
]


# -- metrics: one request per parent and period ---------------------------------------------------
# family: "v2" (explicit UTC window), "journey" (explicit window, journey series), "steps" (period/steps,
# Eastern buckets), "links" (period/steps per link).
_METRICS: list[tuple[str, str, str, str, dict[str, str], bool]] = [
    # name, parent table, path, family, path fields -> parent fields (also the key columns), default
    ("campaign_metrics", "campaigns", "/v1/campaigns/{campaign_id}/metrics", "v2", {"campaign_id": "id"}, True),
    (
        "campaign_action_metrics",
        "campaign_actions",
        "/v1/campaigns/{campaign_id}/actions/{action_id}/metrics",
        "v2",
        {"campaign_id": "campaign_id", "action_id": "id"},
        True,
    ),
    (
        "campaign_journey_metrics",
        "campaigns",
        "/v1/campaigns/{campaign_id}/journey_metrics",
        "journey",
        {"campaign_id": "id"},
        True,
    ),
    ("broadcast_metrics", "broadcasts", "/v1/broadcasts/{broadcast_id}/metrics", "steps", {"broadcast_id": "id"}, True),
    (
        "broadcast_action_metrics",
        "broadcast_actions",
        "/v1/broadcasts/{broadcast_id}/actions/{action_id}/metrics",
        "steps",
        {"broadcast_id": "broadcast_id", "action_id": "id"},
        True,
    ),
    (
        "newsletter_metrics",
        "newsletters",
        "/v1/newsletters/{newsletter_id}/metrics",
        "steps",
        {"newsletter_id": "id"},
        True,
    ),
    (
        "newsletter_variant_metrics",
        "newsletter_variants",
        "/v1/newsletters/{newsletter_id}/contents/{content_id}/metrics",
        "steps",
        {"newsletter_id": "newsletter_id", "content_id": "id"},
        True,
    ),
    (
        "transactional_metrics",
        "transactional_messages",
        "/v1/transactional/{transactional_id}/metrics",
        "steps",
        {"transactional_id": "id"},
        True,
    ),
    (
        "campaign_link_metrics",
        "campaigns",
        "/v1/campaigns/{campaign_id}/metrics/links",
        "links",
        {"campaign_id": "id"},
        False,
    ),
    (
        "campaign_action_link_metrics",
        "campaign_actions",
        "/v1/campaigns/{campaign_id}/actions/{action_id}/metrics/links",
        "links",
        {"campaign_id": "campaign_id", "action_id": "id"},
        False,
    ),
    (
        "broadcast_link_metrics",
        "broadcasts",
        "/v1/broadcasts/{broadcast_id}/metrics/links",
        "links",
        {"broadcast_id": "id"},
        False,
    ),
    (
        "broadcast_action_link_metrics",
        "broadcast_actions",
        "/v1/broadcasts/{broadcast_id}/actions/{action_id}/metrics/links",
        "links",
        {"broadcast_id": "broadcast_id", "action_id": "id"},
        False,
    ),
    (
        "newsletter_link_metrics",
        "newsletters",
        "/v1/newsletters/{newsletter_id}/metrics/links",
        "links",
        {"newsletter_id": "id"},
        False,
    ),
    (
        "newsletter_variant_link_metrics",
        "newsletter_variants",
        "/v1/newsletters/{newsletter_id}/contents/{content_id}/metrics/links",
        "links",
        {"newsletter_id": "newsletter_id", "content_id": "id"},
        False,
    ),
    (
        "transactional_link_metrics",
        "transactional_messages",
        "/v1/transactional/{transactional_id}/metrics/links",
        "links",
        {"transactional_id": "id"},
        False,
    ),
]



def _metrics_spec(name: str, parent: str, path: str, family: str, fields: dict[str, str], default: bool) -> TableSpec:
    keys = tuple(fields) + (("link_id",) if family == "links" else ()) + ("period", "period_start")
    return TableSpec(
        name,
        path,
        "metric",
        keys,
        parent=parent,
        path_fields=dict(fields),
        parent_columns=dict(fields),
        builder=builders.metrics,
        metrics_family=family,
        default=default,
        full_reread=False,
        cost=f"1 per {parent.rstrip('s').replace('_', ' ')} and period" + (" (opt-in)" if not default else ""),
    )


_SPECS.extend(_metrics_spec(*row) for row in _METRICS)

CATALOGUE: dict[str, TableSpec] = {spec.name: spec for spec in _SPECS}
if len(CATALOGUE) != len(_SPECS):  # pragma: no cover - a declaration error
    raise ValueError("a table is declared twice in the catalogue")


def default_tables() -> list[str]:
    """The tables `--tables all` loads, in catalogue order."""
    return [name for name, spec in CATALOGUE.items() if spec.default]
