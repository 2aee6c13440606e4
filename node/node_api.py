"""The daemon's answers to the local API about itself: status, members, peers, invites,
roster changes, gossip records, metrics (docs/api.md)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import trio

from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import peer_id_str
from colonynode.core.invite import issue_invite
from colonynode.gossip.records import ENVELOPE_KIND, open_body
from colonynode.node._base import NodeBase, nid_of
from colonynode.node.api import PermissionDenied
from colonynode.node.membership import NotOwner

__all__ = ["StatusApi"]


class StatusApi(NodeBase):
    def status(self) -> dict[str, Any]:
        roster = self.membership.roster
        me = roster.member(self.identity.node_id) if roster else None
        connected = list(self.transport.peers()) if self._transport else []
        counters = dict(self._transport.counters) if self._transport else {}
        return {
            "peer_id": self.identity.peer_id,
            "name": me.name if me else self.settings.name,
            "colony": roster.colony if roster else self.settings.colony,
            "owner": bool(roster and roster.owner == self.identity.node_id),
            "addrs": self.transport.addrs() if self._transport else [],
            "api": self.api_url,
            "roster_version": roster.version if roster else 0,
            "members": len(roster.members) if roster else 0,
            "connected_peers": len(connected),
            "member": me is not None,
            "voter": bool(roster and self.identity.node_id in roster.voters),
            "roles": list(me.roles) if me else [],
            "uptime_s": round(trio.current_time() - self.started_s, 3),
            "gossip": self.gossip.stats() if self.gossip else {},
            "dht": self._dht_status(),
            "scheduler": self._scheduler_status(),
            "counters": {
                "refused_streams": counters.get("refused_streams", 0),
                "bad_frames": counters.get("bad_frames", 0),
                "joins_refused": counters.get("joins_refused", 0),
                "send_dropped": counters.get("send_dropped", 0),
                "joins_forwarded": counters.get("joins_forwarded", 0),
                **{k: v for k, v in counters.items() if k.startswith("frames_")},
            },
        }

    def _scheduler_status(self) -> dict[str, int]:
        """Executors attached here and the scheduler's counters (detached executors,
        dropped leases, log lines published or dropped, workflow steps failed)."""
        if self.scheduler is None:
            return {}
        return {"executors": len(self.scheduler.executors), **self.scheduler.counters}

    def peers(self) -> list[dict[str, Any]]:
        """Every peer this node knows an address for or is connected to."""
        roster = self.membership.roster
        connected = set(self.transport.peers()) if self._transport else set()
        seen = self._transport.last_seen_unix_s if self._transport else {}
        known = set(self.membership.addrs) | connected
        rows = []
        for nid in sorted(known):
            member = roster.member(nid) if roster else None
            last = seen.get(nid)
            rows.append(
                {
                    "peer_id": peer_id_str(nid),
                    "name": member.name if member else None,
                    "member": member is not None,
                    "addrs": list(self.membership.addrs.get(nid, ())),
                    "connected": nid in connected,
                    "last_seen": None if last is None else round(last, 3),
                }
            )
        return rows

    def _dht_status(self) -> dict[str, Any]:
        if self.dht is None:
            return {}
        core = self.dht.core
        return {**core.stats, "joined": core.joined, "found_peer_addrs": self.dht.found_addrs}

    def members(self) -> list[dict[str, Any]]:
        out = self.membership.describe()
        connected = set(self.transport.peers()) if self._transport else set()
        for m in out:
            nid = nid_of(m["peer_id"])
            m["connected"] = nid in connected
            m["self"] = nid == self.identity.node_id
        return out

    async def create_invite(self, roles: list[str], ttl_s: float) -> str:
        roster = self.membership.roster
        if roster is None or not self.membership.is_owner:
            raise PermissionDenied("only the colony owner's node issues invites")
        return issue_invite(
            self.identity,
            roster.colony,
            tuple(roles),
            token_id=secrets.token_bytes(16),
            now_unix_s=time.time(),
            ttl_s=ttl_s,
        )

    async def remove_member(self, name_or_id: str) -> dict[str, Any]:
        try:
            member, writes = self.membership.remove(name_or_id)
        except NotOwner as exc:
            raise PermissionDenied(str(exc)) from None
        self._persist(writes)
        self._broadcast_roster()
        self._gossip_roster()
        assert self.membership.roster is not None
        return {"removed": member.name, "roster_version": self.membership.roster.version}

    async def set_voters(self, names: list[str]) -> dict[str, Any]:
        try:
            writes = self.membership.set_voters(names)
        except NotOwner as exc:
            raise PermissionDenied(str(exc)) from None
        self._persist(writes)
        self._broadcast_roster()
        self._gossip_roster()
        assert self.membership.roster is not None
        return {"voters": names, "roster_version": self.membership.roster.version}

    async def publish_record(self, kind: str, body: Any) -> dict[str, Any]:
        if self.gossip is None or self._gossip_driver is None:
            raise ColonyError("gossip is not running yet")
        if kind == ENVELOPE_KIND:
            raise ValidationError(f"kind {ENVELOPE_KIND!r} is reserved for signed envelopes")
        env = self.gossip.publish(trio.current_time(), kind, body)
        self._gossip_driver.kick()
        return {"author": peer_id_str(env.author), "seq": open_body(env).seq, "kind": kind}

    def records(self, kind: str | None, limit: int) -> list[dict[str, Any]]:
        """Held gossip records (newest sequence first per author), bodies included."""
        if self.gossip is None:
            return []
        out: list[dict[str, Any]] = []
        for author, hwm in sorted(self.gossip.digest().items()):
            for seq in range(hwm, 0, -1):
                if len(out) >= limit:
                    return out
                env = self.gossip.record(author, seq)
                if env is None:
                    continue
                body = open_body(env)
                if kind is not None and body.kind != kind:
                    continue
                out.append(
                    {"author": peer_id_str(author), "seq": seq, "kind": body.kind,
                     "body": body.body if body.kind != ENVELOPE_KIND else None}
                )  # fmt: skip
        return out

    def metrics_text(self) -> str:
        st = self.status()
        lines = [
            "# TYPE colonynode_roster_version gauge",
            f"colonynode_roster_version {st['roster_version']}",
            "# TYPE colonynode_members gauge",
            f"colonynode_members {st['members']}",
            "# TYPE colonynode_connected_peers gauge",
            f"colonynode_connected_peers {st['connected_peers']}",
        ]
        for key, value in sorted(st["counters"].items()):
            lines += [f"# TYPE colonynode_{key}_total counter", f"colonynode_{key}_total {value}"]
        for key, value in sorted(st["scheduler"].items()):
            kind = "gauge" if key == "executors" else "counter"
            name = f"colonynode_{key}" + ("" if kind == "gauge" else "_total")
            lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
        lines.append("# TYPE colonynode_processes gauge")
        for state, count in sorted(self.processes.count_by_state().items()):
            lines.append(f'colonynode_processes{{state="{state}"}} {count}')
        return "\n".join(lines) + "\n"
