"""The hand-written builders of irregular tables; the catalogue names one per table (``TableSpec.builder``).

A builder is a function ``(build, spec) -> resources``: ``build`` is what every builder of one source shares
(the run context, the selected tables, the bulk mode, the one enumeration of people), ``spec`` the table's
declaration. Regular tables (``builder=None``) are built from their declaration by
:mod:`customerio_source.resources`.

The resource modules read the catalogue, and the catalogue names these functions, so each builder imports
its module when it runs (building a source), not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlt.sources import DltResource

    from .catalogue import TableSpec
    from .context import RunContext

Builder = Callable[["Build", "TableSpec"], Iterator["DltResource"]]


@dataclass
class Build:
    """What the builders of one source share."""

    ctx: RunContext
    names: list[str]
    """The selected tables, in catalogue order."""
    bulk: str = "api"
    people: DltResource | None = None
    """The `customers` resource, once a people table built it (every people table reads one enumeration)."""
    end: Any = None
    """Who is last in the people search (``people.SearchEnd``), shared by `customers` and the transformers."""
    built: set[str] = field(default_factory=set)
    """Tables a builder already yielded along with another (object tables come as one group)."""

    def people_resource(self) -> tuple[DltResource, bool]:
        """The shared `customers` resource, and whether to yield it now: when it is new and `customers` or
        `customer_attributes` is selected (a transformer evaluates its parent even when it is not loaded;
        attributes' deletes follow `customers`, which is enumerated anyway: no extra requests)."""
        if self.people is not None:
            return self.people, False
        from .people import SearchEnd, customers_resource

        self.end = SearchEnd()
        self.people = customers_resource(self.ctx, self.end)
        return self.people, "customers" in self.names or "customer_attributes" in self.names


def deliveries(build: Build, spec: TableSpec) -> Iterator[DltResource]:
    """Deliveries read in time windows on `created` (workspace-wide or per parent), or through an export."""
    from .bulk import bulk_deliveries_resource, choose_bulk
    from .deliveries import deliveries_resource

    if spec.parent is None and build.bulk != "api" and choose_bulk(build.bulk, build.ctx, spec.name):
        yield bulk_deliveries_resource(build.ctx, spec, auto=build.bulk == "auto")
    else:
        yield deliveries_resource(build.ctx, spec)


def activities(build: Build, spec: TableSpec) -> Iterator[DltResource]:
    """The activity log, newest first down to the watermark."""
    from .activities import activities_resource

    yield activities_resource(build.ctx, spec)


def ip_addresses(build: Build, spec: TableSpec) -> Iterator[DltResource]:
    """The workspace's sending IP addresses (a list of strings, not of objects)."""
    from .small import ip_addresses_resource

    yield ip_addresses_resource(build.ctx, spec)


def suppressions(build: Build, spec: TableSpec) -> Iterator[DltResource]:
    """Suppressed email addresses, one request per suppression type."""
    from .small import suppressions_resource

    yield suppressions_resource(build.ctx, spec)


def metrics(build: Build, spec: TableSpec) -> Iterator[DltResource]:
    """A metrics series per parent and period."""
    from .metrics import metrics_resource

    yield metrics_resource(build.ctx, spec, build.ctx.metrics_periods[spec.name])


def customers(build: Build, spec: TableSpec) -> Iterator[DltResource]:
    """The people search: every person, once per run."""
    people, first = build.people_resource()
    if first:
        yield people


def customer_attributes(build: Build, spec: TableSpec) -> Iterator[DltResource]:
    """Each person's attributes: of the people who changed (or everyone), or one export of everyone."""
    if build.bulk == "exports":
        from .bulk import bulk_customer_attributes_resource
        from .runner import mark_reads_all_rows

        resource = bulk_customer_attributes_resource(build.ctx)
        if not build.ctx.interval.bounded:
            mark_reads_all_rows(resource)  # one export of every person: rows it did not see are deleted
        yield resource
        return
    from .bulk import AttributesByExport
    from .people import attributes_transformer

    people, first = build.people_resource()
    if first:
        yield people
    # `auto` decides when the run extracts: building the source sends no request
    exports = AttributesByExport(build.ctx) if build.bulk == "auto" else None
    yield attributes_transformer(build.ctx, people, build.end, exports)


def per_person(build: Build, spec: TableSpec) -> Iterator[DltResource]:
    """One request (or pages) per person: a transformer of the people enumeration."""
    from .people import per_person_transformer

    people, first = build.people_resource()
    if first:
        yield people
    yield per_person_transformer(build.ctx, people, spec.name)


def objects(build: Build, spec: TableSpec) -> Iterator[DltResource]:
    """Objects and their relationships: the selected object tables share one enumeration of objects."""
    from .catalogue import CATALOGUE
    from .objects import objects_resources

    if spec.name in build.built:
        return
    group = [name for name in build.names if CATALOGUE[name].builder is objects]
    build.built.update(group)
    yield from objects_resources(build.ctx, group)


PEOPLE: tuple[Builder, ...] = (customers, customer_attributes, per_person)
"""Builders of tables that come from the people enumeration."""
