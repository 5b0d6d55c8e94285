"""Workspace sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """Row counts for one workspace size (deliveries/activities are approximate targets)."""

    people: int
    deliveries: int
    activities: int
    campaigns: int
    broadcasts: int
    newsletters: int
    segments: int
    object_types: int
    objects: int
    transactional: int
    collections: int
    snippets: int
    senders: int
    topics: int
    webhooks: int
    workspaces: int
    exports: int
    suppressions: int
    segment_densities: tuple[int, ...] | None = None
    """Per-mille membership of each segment, in creation order (None: drawn from the catalogue's choices)."""


SCALES: dict[str, Scale] = {
    "tiny": Scale(people=60, deliveries=400, activities=300, campaigns=4, broadcasts=2, newsletters=3,
                  segments=5, object_types=2, objects=10, transactional=2, collections=2, snippets=3,
                  senders=3, topics=3, webhooks=2, workspaces=1, exports=2, suppressions=5),
    "small": Scale(people=5_000, deliveries=40_000, activities=20_000, campaigns=20, broadcasts=6,
                   newsletters=12, segments=15, object_types=3, objects=200, transactional=4, collections=4,
                   snippets=8, senders=6, topics=5, webhooks=3, workspaces=2, exports=4, suppressions=120),
    "large": Scale(people=100_000, deliveries=400_000, activities=100_000, campaigns=40, broadcasts=10,
                   newsletters=25, segments=30, object_types=3, objects=2_000, transactional=8,
                   collections=6, snippets=15, senders=10, topics=8, webhooks=4, workspaces=2, exports=6,
                   suppressions=1_500),
    # memory stress (issue 18): ~4.6M segment memberships (the biggest segment ~1.16M members) and ~5.2M
    # deliveries; activities and objects stay modest. The simulator builds it in ~1-2 minutes.
    "stress": Scale(people=1_250_000, deliveries=5_200_000, activities=200_000, campaigns=40, broadcasts=10,
                    newsletters=25, segments=12, object_types=3, objects=2_000, transactional=8, collections=6,
                    snippets=15, senders=10, topics=8, webhooks=4, workspaces=2, exports=6, suppressions=5_000,
                    segment_densities=(950, 700, 500, 400, 300, 250, 200, 150, 100, 80, 50, 30)),
    # issue 17: 10 x large in people, deliveries (>= 4M), activities, objects, suppressions and segment
    # memberships (the same 30 segments at the catalogue's densities, ~5M members); the catalogue (campaigns,
    # broadcasts, newsletters, transactional messages) 2.5 x, so per-parent endpoints and metrics grow too.
    "xlarge": Scale(people=1_000_000, deliveries=4_100_000, activities=1_000_000, campaigns=100, broadcasts=25,
                    newsletters=60, segments=30, object_types=3, objects=20_000, transactional=20, collections=6,
                    snippets=15, senders=10, topics=8, webhooks=4, workspaces=2, exports=6, suppressions=15_000),
}
