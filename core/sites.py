"""Which places are the same place for dedup: sites.

Cameras report zones' places, sensors their device's place. Two cameras on
one corner and a water-level sensor there must make one case, so places are
joined into *sites*: every place of a ``[[place_groups]]`` entry, and places
within ``[dedup] merge_within_m`` of each other (single link: A near B near
C joins all three). A site's id is its group id, else the smallest place id
in it, so every worker and every edge box computes the same id from the same
configuration.

A place nobody configured (an alert from a box with a newer configuration)
joins the site of the nearest known place within the distance, or is a site
of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from pydantic import Field

from core.config import Section
from core.records import Place, Slug

EARTH_RADIUS_M = 6_371_008.8


class PlaceGroupConfig(Section):
    """Places that are one place for dedup (e.g. both ends of a market street)."""

    group_id: Slug = Field(description="The site id of the group's cases")
    places: list[Slug] = Field(min_length=1, description="place_ids in the group")


class DedupConfig(Section):
    """How alerts become cases: which places are the same, when a case comes back.

    The edge box uses ``merge_within_m`` (with ``[[place_groups]]``) to key
    each alert by its site; the dispatch service uses all of it.
    """

    merge_within_m: float = Field(
        default=25.0,
        ge=0,
        le=1000,
        description="Places closer than this (metres, by lat/lon) are one site; 0 turns it off",
    )
    reopen_within_s: float = Field(
        default=86400.0,
        ge=0,
        description="A problem back within this long after its case closed reopens the case; "
        "later it opens a new case linked to the old ones",
    )
    coalesce_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="An alert that only adds to what a case already shows (count, last seen, "
        "evidence, readings of a source already in it) is published with the next change, "
        "or at most this many seconds later; 0 publishes every change at once",
    )


def distance_m(a: Place, b: Place) -> float | None:
    """Great-circle distance in metres, or None if either has no coordinates."""
    if a.lat is None or a.lon is None or b.lat is None or b.lon is None:
        return None
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class _UnionFind:
    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {i: i for i in items}

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class SiteMap:
    """place_id -> site_id, from the known places, the groups and the distance."""

    def __init__(
        self,
        places: Sequence[Place],
        groups: Sequence[PlaceGroupConfig] = (),
        merge_within_m: float = 0.0,
    ) -> None:
        self.merge_within_m = merge_within_m
        self._places = {p.place_id: p for p in places}
        ids = set(self._places) | {pid for g in groups for pid in g.places}
        uf = _UnionFind(ids)
        for g in groups:
            for pid in g.places[1:]:
                uf.union(g.places[0], pid)
        located = [p for p in self._places.values() if p.lat is not None and p.lon is not None]
        if merge_within_m > 0:
            for i, a in enumerate(located):
                for b in located[i + 1 :]:
                    d = distance_m(a, b)
                    if d is not None and d <= merge_within_m:
                        uf.union(a.place_id, b.place_id)
        group_of_root: dict[str, str] = {}
        for g in sorted(groups, key=lambda g: g.group_id):
            group_of_root.setdefault(uf.find(g.places[0]), g.group_id)
        self._site = {pid: group_of_root.get(uf.find(pid), uf.find(pid)) for pid in ids}

    def site_of(self, place: Place) -> str:
        site = self._site.get(place.place_id)
        if site is not None:
            return site
        best: tuple[float, str] | None = None
        if self.merge_within_m > 0:
            for known in self._places.values():
                d = distance_m(place, known)
                if d is not None and d <= self.merge_within_m and (best is None or d < best[0]):
                    best = (d, self._site[known.place_id])
        return best[1] if best else place.place_id

    def members(self, site_id: str) -> list[str]:
        return sorted(pid for pid, s in self._site.items() if s == site_id)
