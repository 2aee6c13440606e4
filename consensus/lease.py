"""`ConsensusCore`: both roles of one node, the core a driver runs (DESIGN.md §2, §6).

Every node has the claimer role (it may submit, claim, close, read); a node named in
`voters()` also serves as a voter. Requests a node sends to itself (a voter that also
claims, a colony of one) are answered inside the same step, never through the network,
and the voter's writes come out in the same effects batch: persisted before anything
of the step is sent.

What the driver provides: `store` (the voter's registers), `rng` (a fresh random stream
per incarnation: request nonces come from it), `voters` (the roster's voter set at
construction; a `ChangeVoters` request when the roster changes it), `has_role(node,
role)` (the roster's membership check), `pinned(voter, register, now_s)` (what the
application still needs of its registers: compaction.py, "Pins"), `sign(message)` (the
node's signature, for its voter's certificates: certs.py), and `now_s` on every
call from one monotonic clock. The application asks through one entry point,
`request(now_s, req) -> id` (requests.py); the events answering it carry the id. What
the driver does with `take_effects()`: persist `writes`, then send `sends`, hand
`events` to the application, and call `on_tick` at `wake_at_s`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from colonynode.consensus.certs import Sign
from colonynode.consensus.claimer import ClaimerConfig, ClaimerCore
from colonynode.consensus.compaction import Pinned, Retention
from colonynode.consensus.events import VotersChanged
from colonynode.consensus.handover import VoterSet
from colonynode.consensus.register import Timing
from colonynode.consensus.requests import ChangeVoters, Request
from colonynode.consensus.voter import HasRole, VoterCore
from colonynode.core.effects import Effects
from colonynode.core.ids import NodeId
from colonynode.storage.api import Store

__all__ = ["ConsensusCore"]

LOOPBACK_MAX = 10_000  # self-addressed messages handled in one step


def _anyone(node: NodeId, role: str) -> bool:
    return True


class ConsensusCore:
    """The lease-register protocol of one node: claimer always, voter when listed."""

    def __init__(
        self,
        node_id: NodeId,
        store: Store,
        rng: random.Random,
        *,
        voters: tuple[NodeId, ...] | VoterSet,
        has_role: HasRole = _anyone,
        config: ClaimerConfig | None = None,
        timing: Timing | None = None,
        retention: Retention | None = None,
        unix_ns: Callable[[], int | None] = lambda: None,
        pinned: Pinned | None = None,
        sign: Sign | None = None,
        planted_bug: str = "",
    ) -> None:
        self.node_id = node_id
        timing = timing or Timing()
        initial = voters if isinstance(voters, VoterSet) else VoterSet(1, tuple(voters))
        self.voter = VoterCore(
            node_id,
            store,
            timing=timing,
            has_role=has_role,
            voter_set=initial,
            retention=retention,
            unix_ns=unix_ns,
            pinned=pinned,
            sign=sign,
            retry_s=(config or ClaimerConfig()).retry_s,
            planted_bug=planted_bug,
        )
        self.claimer = ClaimerCore(
            node_id, self.voters, rng, config=config, timing=timing, version=self.version
        )
        self.now_s = 0.0  # the latest time a call brought (for self-addressed messages)
        self.next_req = 0  # request ids: 1, 2, 3, ... per incarnation

    def voters(self) -> tuple[NodeId, ...]:
        """The voter set this node addresses (the newest it knows)."""
        return self.voter.vset.voters

    def version(self) -> int:
        return self.voter.vset.version

    def served(self) -> bool:
        """Has a majority of the newest voter set said (answering a Read) that it serves
        that set? Only then may the roster's owner change the voters again: a set whose
        handover has not finished holds nothing to hand on (sealing a majority of it
        would not meet the majority that committed under the set before).
        (docs/consensus.md, "A change waits for the last one".)"""
        vset = self.voter.vset
        seen = self.claimer.serving_seen
        ready = sum(seen.get(v, (0, 0))[0] >= vset.version for v in vset.voters)
        return ready >= vset.majority()

    def frozen_at_voters(self) -> bool:
        """Did a voter of the newest set, serving it, say it holds a process frozen? A
        change hands such a process on frozen (handover.py), where only the old set's
        late answers could settle it: auto mode waits a grace period first."""
        vset = self.voter.vset
        seen = self.claimer.serving_seen
        return any(seen.get(v, (0, 0)) >= (vset.version, 1) for v in vset.voters)

    @property
    def is_voter(self) -> bool:
        return self.node_id in self.voter.vset.voters or self.voter.serving > 0

    # -- the one request entry point ----------------------------------------------------

    def request(self, now_s: float, req: Request) -> int:
        """Start `req` (requests.py); returns its id. Every outcome is an event whose
        `reqs` holds that id (events.py), in this or a later step's effects."""
        self.now_s = now_s
        self.next_req += 1
        req_id = self.next_req
        if isinstance(req, ChangeVoters):
            changed = self._change_voters(now_s, req)
            self.claimer.effects.events.append(VotersChanged(req.version, changed, (req_id,)))
        else:
            self.claimer.request(now_s, req, req_id)
        return req_id

    def _change_voters(self, now_s: float, req: ChangeVoters) -> bool:
        if req.version <= self.voter.vset.version:
            return False
        prev = self.voter.vset.voters if req.previous is None else req.previous
        vset = VoterSet(req.version, tuple(req.voters), tuple(prev), self.voter.vset.version)
        self.voter.set_voters(now_s, vset)
        self.claimer.on_voters_changed(now_s)
        return True

    def claiming(self, pid: bytes) -> bool:
        return self.claimer.claiming(pid)

    # -- ProtocolCore -------------------------------------------------------------------

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        self.now_s = now_s
        if self.voter.handles(msg):
            if self.is_voter:
                self.voter.on_message(now_s, sender, msg)
        elif self.claimer.handles(msg):
            self.claimer.on_message(now_s, sender, msg)

    def on_tick(self, now_s: float) -> None:
        self.now_s = now_s
        self.voter.on_tick(now_s)
        self.claimer.on_tick(now_s)

    def take_effects(self) -> Effects:
        """Both roles' effects, with self-addressed messages handled here."""
        out = Effects()
        me = self.node_id
        for _ in range(LOOPBACK_MAX):
            step = self.voter.take_effects()
            step.merge(self.claimer.take_effects())
            out.writes.extend(step.writes)
            out.events.extend(step.events)
            if step.wake_at_s is not None and (
                out.wake_at_s is None or step.wake_at_s < out.wake_at_s
            ):
                out.wake_at_s = step.wake_at_s
            local = [msg for to, msg in step.sends if to == me]
            out.sends.extend((to, msg) for to, msg in step.sends if to != me)
            if not local:
                break
            now_s = self.now_s
            for msg in local:
                self.on_message(now_s, me, msg)
        return out
