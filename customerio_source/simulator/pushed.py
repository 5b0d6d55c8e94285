"""What the send APIs (Track v1/v2, Data Pipelines) wrote into a :class:`Workspace`, and how it is applied.

The generated workspace derives everything from indices; data sent through the Track or Data Pipelines
API is kept here, in small overlays the App API side reads (``Workspace.attributes``, ``identifiers``,
``customer``, ``find_person``, segment and object lookups consult :class:`Pushed`). People created by a
send API get the next person index, like the people a change step adds. :class:`SendEffects` holds the
mutation methods the send handlers call (``simulator/track_api.py``, ``simulator/cdp_api.py``); the
workspace lock is held by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .workspace import Workspace

EVENT_KIND, PAGE_KIND, SCREEN_KIND = 4, 5, 8  # indices into workspace.ACT_KINDS


@dataclass
class Pushed:
    """Overlays written by the send APIs (all keyed by workspace indices)."""

    people: dict[int, dict[str, Any]] = field(default_factory=dict)  # created here: {"id", "email"}
    by_id: dict[str, int] = field(default_factory=dict)
    by_email: dict[str, int] = field(default_factory=dict)
    devices: dict[int, dict[str, dict]] = field(default_factory=dict)  # person -> token -> device
    removed_devices: dict[int, set[str]] = field(default_factory=dict)
    suppressed: set[str] = field(default_factory=set)  # identifiers of suppressed people
    seg_removed: dict[int, set[int]] = field(default_factory=dict)
    event_ts: dict[int, int] = field(default_factory=dict)  # activity index -> the event's own timestamp
    objects: dict[tuple[int, str], int] = field(default_factory=dict)  # (type index, object_id) -> o
    object_ids: dict[int, list[str]] = field(default_factory=dict)  # type index -> object ids created here
    object_attrs: dict[tuple[int, int], dict[str, str]] = field(default_factory=dict)
    deleted_objects: set[tuple[int, int]] = field(default_factory=set)
    related: dict[tuple[int, int], dict[int, dict]] = field(default_factory=dict)  # (t, o) -> person -> attrs
    unrelated: set[tuple[int, int, int]] = field(default_factory=set)
    merges: list[tuple[int, int]] = field(default_factory=list)  # (primary, secondary)
    moved_activities: set[int] = field(default_factory=set)  # people whose activities a merge moved away

    # -- reads the App API side makes ------------------------------------------------------------
    def base_attributes(self, ws: Workspace, i: int) -> dict[str, str]:
        rec = self.people[i]
        attrs = {"cio_id": ws.cio_id(i)}
        if rec["id"] is not None:
            attrs["id"] = rec["id"]
        if rec["email"] is not None:
            attrs["email"] = rec["email"]
        return attrs

    def find(self, ws: Workspace, value: str, id_type: str) -> int | None:
        i = self.by_id.get(value) if id_type == "id" else self.by_email.get(value) if id_type == "email" else None
        return i if i is not None and ws.alive(i) else None

    def devices_of(self, i: int, generated: list[dict]) -> list[dict]:
        removed = self.removed_devices.get(i, set())
        added = self.devices.get(i, {})
        out = [d for d in generated if d["id"] not in removed and d["id"] not in added]
        out.extend(added.values())
        return out

    def object_record(self, ws: Workspace, t: int, o: int) -> dict:
        attrs = dict(self.object_attrs.get((t, o), {}))
        return {
            "attributes": attrs,
            "timestamps": dict.fromkeys(attrs, ws.now),
            "identifiers": {"object_id": ws.object_id(t, o), "cio_object_id": ws.cio_object_id(t, o)},
            "object_type_id": ws.cat.object_types[t]["id"],
        }

    def live_objects(self, t: int, n_generated: int) -> Iterator[int]:
        """Indices of the objects of type ``t`` that exist: the generated ones, then those created here,
        without the deleted ones (what ``POST /v1/objects`` searches)."""
        deleted = self.deleted_objects
        candidates = range(n_generated + len(self.object_ids.get(t, ())))
        if not deleted:
            return iter(candidates)
        return (o for o in candidates if (t, o) not in deleted)

    def people_of(self, t: int, o: int, generated: list[int]) -> list[int]:
        if (t, o) in self.deleted_objects:
            return []
        out = [i for i in generated if (t, o, i) not in self.unrelated]
        seen = set(out)
        out.extend(i for i in self.related.get((t, o), {}) if i not in seen)
        return out

    def relationship_attributes(self, t: int, o: int, i: int) -> dict | None:
        """The attributes a send API gave the relationship of person ``i`` to object ``(t, o)``, if it did."""
        return self.related.get((t, o), {}).get(i)

    def objects_of(self, i: int, generated: list[tuple[int, int]]) -> list[tuple[int, int]]:
        have = set(generated)
        return [
            key
            for key, people in self.related.items()
            if i in people and key not in have and key not in self.deleted_objects
        ]


def stringify(value: Any) -> str:
    """Attribute values as the App API returns them: strings (JSON for lists and objects)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        import orjson

        return orjson.dumps(value).decode()
    return str(value)


class SendEffects:
    """Mutation methods for the send APIs (mixed into :class:`Workspace`)."""

    pushed: Pushed

    def resolve_person(self: Workspace, identifiers: dict[str, Any], create: bool = False) -> int | None:
        """The live person ``identifiers`` name (one of id, email, cio_id), created when ``create``."""
        for id_type in ("id", "cio_id", "email"):
            value = identifiers.get(id_type)
            if value not in (None, ""):
                value = str(value)
                i = self.find_person(value, id_type)
                if i is not None or not create or id_type == "cio_id":
                    return i
                if value in self.pushed.suppressed:
                    return None
                return self._create_pushed_person(id_type, value)
        return None

    def _create_pushed_person(self: Workspace, id_type: str, value: str) -> int:
        i = self.n_people
        self._p_created_extra[i] = self.now
        self.n_people += 1
        rec = {"id": value if id_type == "id" else None, "email": value if id_type == "email" else None}
        self.pushed.people[i] = rec
        if rec["id"] is not None:
            self.pushed.by_id[value] = i
        if rec["email"] is not None:
            self.pushed.by_email[value] = i
        self._change_gen += 1
        return i

    def set_person_attributes(self: Workspace, i: int, attributes: dict[str, Any], ts: int | None = None) -> None:
        """Identify: attributes replace the ones of the same name (a null or "" removes one)."""
        overlay = self._attr_overlay.setdefault(i, {})
        stamps = self._ts_overlay.setdefault(i, {})
        for name, value in attributes.items():
            if value is None or value == "":
                overlay.pop(name, None)
                continue
            overlay[name] = stringify(value)
            stamps[name] = int(ts or self.now)
            if name == "email" and i in self.pushed.people:
                self.pushed.by_email[overlay[name]] = i
        self._ident_cache.pop(i, None)
        self._change_gen += 1

    def delete_pushed_person(self: Workspace, i: int) -> None:
        self.deleted_people[i] = self.step
        self._ident_cache.pop(i, None)
        self._seg_cache.clear()
        self._change_gen += 1

    def record_event(self: Workspace, i: int, kind: int, name: str, data: dict[str, Any], ts: int) -> int:
        """An event/page/screen as an activity of person ``i`` (newest last; its own ``timestamp`` kept)."""
        from .changes import _add_activity

        j = _add_activity(self, max(ts, self.a_ts[-1] if len(self.a_ts) else ts), kind, -1, i)
        self._a_data[j] = (name, data)
        self.pushed.event_ts[j] = int(ts)
        return j

    def add_pushed_device(self: Workspace, i: int, device: dict[str, Any]) -> None:
        token = str(device["id"])
        self.pushed.devices.setdefault(i, {})[token] = device
        self.pushed.removed_devices.get(i, set()).discard(token)

    def remove_pushed_device(self: Workspace, i: int, token: str) -> None:
        self.pushed.devices.get(i, {}).pop(token, None)
        self.pushed.removed_devices.setdefault(i, set()).add(token)

    def merge_people(self: Workspace, primary: int, secondary: int) -> None:
        """The secondary's attributes fill the primary's gaps; the secondary is deleted."""
        if primary == secondary:
            return
        mine = self.attributes(primary)
        theirs = {
            k: v for k, v in self.attributes(secondary).items() if k not in mine and k not in ("id", "email", "cio_id")
        }
        if theirs:
            self.set_person_attributes(primary, theirs)
        self._move_history(primary, secondary)
        self.pushed.merges.append((primary, secondary))
        self.delete_pushed_person(secondary)

    def _move_history(self: Workspace, primary: int, secondary: int) -> None:
        """The secondary's activities, devices and object relationships become the primary's."""
        moved = self.person_activities(secondary)
        for j in moved:
            self.a_person[j] = primary
        if moved:
            self._ap_extra.setdefault(primary, []).extend(moved)
            self._ap_extra.pop(secondary, None)
            self.pushed.moved_activities.add(secondary)
        for device in self.customer(secondary)["devices"]:
            self.pushed.devices.setdefault(primary, {}).setdefault(str(device["id"]), dict(device))
        for t, o in self.person_objects(secondary):
            if primary not in self.pushed.related.get((t, o), {}):
                attrs = self.pushed.relationship_attributes(t, o, secondary) or {}
                if (t, o) not in self.person_objects(primary):
                    self.relate(t, o, primary, attrs)
            self.unrelate(t, o, secondary)

    def suppress_person(self: Workspace, i: int) -> None:
        ident = self.identifiers(i)
        self.pushed.suppressed.update(str(v) for k, v in ident.items() if v and k != "cio_id")
        self.delete_pushed_person(i)

    def unsuppress(self: Workspace, identifiers: dict[str, Any]) -> None:
        for value in identifiers.values():
            self.pushed.suppressed.discard(str(value))

    def segment_add(self: Workspace, s: int, i: int) -> None:
        self.pushed.seg_removed.get(s, set()).discard(i)
        self._seg_added.setdefault(s, set()).add(i)
        self._seg_cache.pop(s, None)
        self._change_gen += 1

    def segment_remove(self: Workspace, s: int, i: int) -> None:
        self._seg_added.get(s, set()).discard(i)
        self.pushed.seg_removed.setdefault(s, set()).add(i)
        self._seg_cache.pop(s, None)
        self._change_gen += 1

    def object_type_index(self: Workspace, type_id: Any) -> int | None:
        try:
            t = int(type_id) - 1
        except (TypeError, ValueError):
            return None
        return t if 0 <= t < len(self.cat.object_types) else None

    def upsert_object(self: Workspace, t: int, object_id: str, attributes: dict[str, Any]) -> int:
        found = self.find_object(str(t + 1), object_id, None)
        if found is None:
            ids = self.pushed.object_ids.setdefault(t, [])
            o = self.sc.objects + len(ids)
            ids.append(object_id)
            self.pushed.objects[(t, object_id)] = o
        elif found in self.pushed.deleted_objects:  # identified again after a delete: a fresh object
            o = found[1]
            self.pushed.object_attrs[(t, o)] = {}
            self.pushed.related.pop((t, o), None)
            self.pushed.deleted_objects.discard((t, o))
            base = self.object_people(t, o)  # the generated relationships stay deleted
            self.pushed.unrelated.update((t, o, i) for i in base)
        else:
            o = found[1]
            if (t, o) not in self.pushed.object_attrs:
                self.pushed.object_attrs[(t, o)] = dict(self.object_record(t, o)["attributes"])
        attrs = self.pushed.object_attrs.setdefault((t, o), {})
        for name, value in attributes.items():
            if value is None or value == "":
                attrs.pop(name, None)
            else:
                attrs[name] = stringify(value)
        return o

    def delete_object(self: Workspace, t: int, o: int) -> None:
        self.pushed.deleted_objects.add((t, o))

    def relate(self: Workspace, t: int, o: int, i: int, attributes: dict[str, Any] | None = None) -> None:
        self.pushed.unrelated.discard((t, o, i))
        self.pushed.related.setdefault((t, o), {})[i] = dict(attributes or {})

    def unrelate(self: Workspace, t: int, o: int, i: int) -> None:
        self.pushed.related.get((t, o), {}).pop(i, None)
        self.pushed.unrelated.add((t, o, i))
