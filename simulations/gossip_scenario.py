"""The `gossip` scenario: the real `GossipCore` on every node, four cases (`--param case=`).

- ``spread``: records published at random nodes for `publish_s` seconds; how fast and
  with how many copies they reach everyone (1 % loss with `--param loss_p=0.01`);
- ``offline_burst``: `offline_fraction` of the nodes crash, a burst of `records` records is
  published by the others in `burst_s`; `offline_s` later (longer than the IHAVE window,
  so only anti-entropy can repair them) the crashed nodes restart: how many anti-entropy
  rounds until every node holds every record;
- ``partition``: a 50/50 partition for `partition_s` seconds while records are published
  on both sides, then healed: how long until full convergence;
- ``adversary``: as spread, plus a member that floods records with bad signatures (forged
  for other authors, at sequences they have not reached yet) and a non-member that
  connects and grafts, gossips and pushes records signed by itself.

Nodes connect to `degree` random others (symmetric, about `degree` connections each);
every 0.5 s each node is told which of its connections are up and on its side of a
partition (`set_peers`), as the daemon's connection events would.

Node ids are real Ed25519 keys derived from the seed, so bad signatures are really bad.
Signature checks go through one `VerifyMemo` shared by all nodes: a real PyNaCl verify
the first time an envelope's exact bytes are seen, a dict lookup afterwards. It gives the
answer a real verify gives (deterministic), and saves 1,000 nodes from checking the same
signature 1,000 times (~60 µs each): a simulation speed-up, not a shortcut in the core.

Checkers: ``gossip-validity`` (no honest node relays or accepts an invalid record: bad
signature or non-member author; every record an honest node accepts was published).
Liveness: every honest node is up again and holds every published record (the liveness
phase restarts and resumes every node: `heal_all`).

Metrics: ``delivered_fraction_at_3_heartbeats`` ((record, honest node) pairs delivered
within 3 heartbeats of the publish, over records × honest nodes),
``delivered_fraction_final``, ``heartbeats_to_full_delivery`` (the slowest record's time
to reach every honest node, in heartbeats; None if some record never did),
``anti_entropy_rounds_to_converge`` (offline_burst and partition: from the restart or heal
to full convergence, in anti-entropy intervals), ``amplification`` (copies of honest
records received per honest node per record).
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any, ClassVar

from colonynode.core.codec import encode
from colonynode.core.effects import Effects
from colonynode.core.envelope import Envelope
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.gossip import (
    RECORD_DOMAIN,
    VOID_KIND,
    Accepted,
    GossipConfig,
    GossipCore,
    Graft,
    IHave,
    Push,
    RecordBody,
    SeqRange,
    Summary,
    seal_record,
    verify_record,
)
from colonynode.simulations.checkers import BaseChecker
from colonynode.simulations.network import random_links
from colonynode.simulations.node import as_asked
from colonynode.simulations.scenario import Metric, ParamValue, Scenario, register_scenario
from colonynode.storage.api import Store

if TYPE_CHECKING:
    from colonynode.simulations.node import SimNode
    from colonynode.simulations.world import World

__all__ = ["FlooderCore", "GossipScenario", "GossipValidity", "NonMemberCore", "VerifyMemo"]

CASES = ("spread", "offline_burst", "partition", "adversary")
START_S = 3.0  # every case starts its action here (nodes boot in [0, 1), meshes form)
PEER_REFRESH_S = 0.5
MEMO_MAX = 4_000_000  # memoised verifications; cleared when full (still correct)
FLOOD_EVERY_S = 0.1
FLOOD_RECORDS = 32  # forged records per flood
MESSAGE_OVERHEAD_BYTES = 16
RECORD_OVERHEAD_BYTES = 110  # author, signature, domain and framing of one envelope


class VerifyMemo:
    """Record signature checks, memoised on the envelope's exact bytes (see the doc)."""

    def __init__(self) -> None:
        self.memo: dict[tuple[bytes, bytes, bytes, str], bool] = {}
        self.real_checks = 0

    def __call__(self, env: Envelope) -> bool:
        key = (env.author, env.payload, env.signature, env.domain)
        ok = self.memo.get(key)
        if ok is None:
            if len(self.memo) >= MEMO_MAX:
                self.memo.clear()
            self.real_checks += 1
            ok = self.memo[key] = verify_record(env)
        return ok


class FlooderCore(GossipCore):
    """A member that relays like everyone else and floods forged records to its peers."""

    def __init__(self, *args: Any, victims: list[NodeId], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.victims = victims
        self.next_flood_s = 0.0  # local time: from the first tick with peers
        self.forged = 0

    def on_tick(self, now_s: float) -> None:
        super().on_tick(now_s)
        if now_s >= self.next_flood_s:
            self.next_flood_s = now_s + FLOOD_EVERY_S
            if not self.peers:
                return
            forged = []
            for _ in range(FLOOD_RECORDS):
                victim = self.victims[self.rng.randrange(len(self.victims))]
                seq = self.ledger.hwm.get(victim, 0) + 1 + self.rng.randrange(4)
                payload = encode(RecordBody(seq, "note", {"forged": self.forged}))
                forged.append(Envelope(victim, RECORD_DOMAIN, payload, self.rng.randbytes(64)))
                self.forged += 1
            msg = Push(tuple(forged))
            for p in self.peers:
                self._send(p, msg)

    def take_effects(self) -> Effects:
        effects = super().take_effects()
        if effects.wake_at_s is None or self.next_flood_s < effects.wake_at_s:
            effects.wake_at_s = self.next_flood_s
        return effects


class NonMemberCore:
    """A node outside the roster that connects and speaks gossip with valid signatures."""

    def __init__(self, identity: Identity, rng: random.Random) -> None:
        self.identity = identity
        self.rng = rng
        self.peers: list[NodeId] = []
        self.seq = 0
        self.next_s = 0.0
        self._effects = Effects()

    def set_peers(self, now_s: float, peers: list[NodeId]) -> None:
        self.peers = list(peers)

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        return None

    def on_tick(self, now_s: float) -> None:
        if now_s < self.next_s:
            return
        self.next_s = now_s + 0.2
        if not self.peers:
            return
        self.seq += 1
        env = seal_record(self.identity, self.seq, "note", {"intruder": self.seq})
        me = self.identity.node_id
        msgs = [Graft(), Push((env,)), IHave((SeqRange(me, 1, self.seq),))]
        msgs.append(Summary(1, bytes(16)))
        for p in self.peers:
            for m in msgs:
                self._effects.sends.append((p, m))

    def take_effects(self) -> Effects:
        effects, self._effects = self._effects, Effects()
        effects.wake_at_s = self.next_s
        return effects


class GossipValidity(BaseChecker):
    """No honest node relays or accepts an invalid record; counts honest copies."""

    name = "gossip-validity"

    def __init__(self, scenario: GossipScenario) -> None:
        self.s = scenario
        self.copies = 0  # copies of valid records delivered to honest nodes

    def valid(self, env: Envelope) -> bool:
        s = self.s
        return env.domain == RECORD_DOMAIN and env.author in s.members and s.memo(env)

    def after_step(self, world: World) -> list[str]:
        found: list[str] = []
        honest = self.s.honest
        frame = world.step_frame
        if frame is not None and honest[frame[0]]:
            src, dst, _, msgs = frame
            for msg in msgs:
                if type(msg) is Push:
                    for env in msg.records:
                        if not self.valid(env):
                            found.append(f"honest node {src} relayed an invalid {env!r}")
                        elif honest[dst]:
                            self.copies += 1
        for node, event in world.step_events:
            if type(event) is Accepted and honest[node]:
                env = event.envelope
                if not self.valid(env):
                    found.append(f"honest node {node} accepted an invalid {env!r}")
                elif event.kind == VOID_KIND:
                    continue
                elif not event.local and (event.author, event.seq) not in self.s.index:
                    found.append(f"node {node} accepted {env!r}, which nobody published")
        return found


@register_scenario
class GossipScenario(Scenario):
    name = "gossip"
    description = "gossip records: spread, offline burst, partition, adversaries (case=...)"
    rank = 4  # below the claims scenario (the most complete one)
    default_nodes = 200
    safety_s = 20.0
    liveness_s = 60.0
    heal_all = True
    params: ClassVar[dict[str, ParamValue]] = {
        "case": "spread",
        "records": 0,  # 0: the case's default (spread/adversary 200, others 1,000)
        "publish_s": 10.0,
        "loss_p": -1.0,  # >= 0: replaces the fault profile's frame loss
        "degree": 20,
        "offline_fraction": 0.3,
        "burst_s": 1.0,
        "offline_s": 10.0,  # offline_burst: down this long after the burst
        "partition_s": 60.0,
        "planted_bug": "",  # skip_verify: honest cores accept any signature (checker test)
    }
    main_series = "delivered_fraction"
    headline = (
        "delivered_fraction_at_3_heartbeats",
        "delivered_fraction_final",
        "heartbeats_to_full_delivery",
        "anti_entropy_rounds_to_converge",
        "amplification",
    )

    def __init__(self, params: dict[str, ParamValue] | None = None) -> None:
        super().__init__(params)
        self.case = self.param_str("case")
        if self.case not in CASES:
            raise ValueError(f"case is one of {', '.join(CASES)}, not {self.case!r}")
        default_records = 200 if self.case in ("spread", "adversary") else 1000
        self.records = self.param_int("records") or default_records
        # The timeline of each case fits its safety phase (a CLI --safety-s overrides it).
        if self.case == "offline_burst":
            self.repair_s = (
                START_S + 1.0 + self.param_float("burst_s") + self.param_float("offline_s")
            )
            safety_s = self.repair_s + 1.0
        elif self.case == "partition":
            self.repair_s = START_S + self.param_float("partition_s")
            safety_s = self.repair_s + 1.0
        else:
            self.repair_s = -1.0
            safety_s = START_S + self.param_float("publish_s") + 2.0
        self.safety_s = safety_s  # type: ignore[misc]  # per case, read by World
        self.config = GossipConfig.lan()
        self.memo = VerifyMemo()
        self.identities: list[Identity] = []
        self.members: set[NodeId] = set()
        self.honest: list[bool] = []
        self.index: dict[tuple[NodeId, int], int] = {}  # record id -> record number
        self.published_s: list[float] = []
        self.reached: list[int] = []  # honest nodes holding each record
        self.last_s: list[float] = []
        self.held: list[int] = []  # records each node accepted (once each)
        self.accepted: list[bytearray] = []  # node -> record number -> accepted yet
        self.whole: dict[int, tuple[int, int]] = {}  # node -> (incarnation, records) checked
        self.reaccepted = 0  # records a node accepted again (it lost them in a crash)
        self.on_time = 0  # pairs delivered within 3 heartbeats
        self.delivered = 0
        self.full = 0  # records every honest node holds
        self.full_at_s: float | None = None
        self.n_honest = 0
        self.links: list[list[int]] = []
        self.given: list[tuple[int, tuple[NodeId, ...]] | None] = []
        self.checker: GossipValidity | None = None
        self.publish_rng = random.Random(0)
        self.lost_publishes = 0

    # -- world hooks --------------------------------------------------------------------

    def make_node_id(self, rng: random.Random, index: int) -> NodeId:
        identity = Identity(rng.randbytes(32))
        self.identities.append(identity)
        return identity.node_id

    def size_of(self, msg: Any) -> int:
        if type(msg) is Push:
            return MESSAGE_OVERHEAD_BYTES + sum(
                RECORD_OVERHEAD_BYTES + len(e.payload) for e in msg.records
            )
        ranges = getattr(msg, "ranges", None) or getattr(msg, "hwms", None) or ()
        return MESSAGE_OVERHEAD_BYTES + 48 * len(ranges)

    def build(self, world: World) -> None:
        n = world.n
        loss_p = self.param_float("loss_p")
        if loss_p >= 0:
            world.network.model = dataclasses.replace(world.network.model, loss_p=loss_p)
        flooder = non_member = -1
        if self.case == "adversary" and n >= 4:
            flooder, non_member = n - 2, n - 1
        self.honest = [i not in (flooder, non_member) for i in range(n)]
        self.n_honest = sum(self.honest)
        self.members = {world.ids[i] for i in range(n) if i != non_member}
        self.held = [0] * n
        self.accepted = [bytearray() for _ in range(n)]
        self.given = [None] * n
        identity_of = {ident.node_id: ident for ident in self.identities}
        victims = [world.ids[i] for i in range(n) if self.honest[i]]
        is_member = self.members.__contains__
        config = self.config
        memo: Any = self.memo
        if self.param_str("planted_bug") == "skip_verify":
            memo = _accept_any
        nm_id = world.ids[non_member] if non_member >= 0 else None
        fl_id = world.ids[flooder] if flooder >= 0 else None

        def make_core(node_id: NodeId, store: Store, rng: random.Random) -> Any:
            identity = identity_of[node_id]
            if node_id == nm_id:
                return NonMemberCore(identity, rng)
            if node_id == fl_id:
                return FlooderCore(
                    identity, store, rng, config, is_member=is_member, verify=memo, victims=victims
                )
            return GossipCore(identity, store, rng, config, is_member=is_member, verify=memo)

        world.add_nodes(make_core, "gossip", sync_policy=as_asked)
        self.links = self._connect(world)
        self.checker = GossipValidity(self)
        world.add_checker(self.checker)
        self.publish_rng = world.rng_for("workload")
        world.schedule(PEER_REFRESH_S, _refresh_peers)
        self._schedule_case(world)

    def _connect(self, world: World) -> list[list[int]]:
        return random_links(world.rng_for("peers"), world.n, self.param_int("degree"))

    def _schedule_case(self, world: World) -> None:
        rng = world.rng_for("case")
        case = self.case
        if case == "offline_burst":
            honest = [i for i in range(world.n) if self.honest[i]]
            down = rng.sample(honest, int(self.param_float("offline_fraction") * len(honest)))
            world.schedule(START_S, lambda w: _crash_all(w, down))
            burst_s = self.param_float("burst_s")
            times = sorted(START_S + 1.0 + rng.uniform(0.0, burst_s) for _ in range(self.records))
            world.schedule(self.repair_s, lambda w: _restart_all(w, down))
        elif case == "partition":
            order = list(range(world.n))
            rng.shuffle(order)
            labels = [0] * world.n
            for i in order[: world.n // 2]:
                labels[i] = 1
            world.schedule(START_S, lambda w: w.network.partition(labels))
            world.schedule(self.repair_s, lambda w: w.network.heal())
            span_s = max(0.5, self.param_float("partition_s") - 2.0)
            times = sorted(START_S + 1.0 + rng.uniform(0.0, span_s) for _ in range(self.records))
        else:
            span_s = self.param_float("publish_s")
            times = sorted(START_S + rng.uniform(0.0, span_s) for _ in range(self.records))
        for k, at_s in enumerate(times):
            world.schedule(at_s, _Publish(self, k))

    def publish(self, world: World, k: int) -> None:
        """Record number k: published by a random honest node that is up."""
        rng = self.publish_rng
        nodes = world.nodes
        for _ in range(64):
            i = rng.randrange(world.n)
            node = nodes[i]
            if self.honest[i] and node.alive and not node.paused:
                node.call(lambda core, now_s: core.publish(now_s, "note", {"k": k}))
                return
        self.lost_publishes += 1

    def refresh_peers(self, world: World) -> None:
        """Tell each node which of its connections are up and on its side."""
        net = world.network
        up, labels, ids = net.up, net.labels, net.ids
        for i, node in enumerate(world.nodes):
            if not node.alive:
                continue
            label = labels[i]
            live = tuple(ids[j] for j in self.links[i] if up[j] and labels[j] == label)
            given = (node.incarnation, live)
            if self.given[i] != given:
                self.given[i] = given
                node.call(_SetPeers(live))

    def on_event(self, world: World, node: SimNode[Any], event: Any) -> None:
        if type(event) is not Accepted or not self.honest[node.index]:
            return
        if event.kind == VOID_KIND:  # a number a restart passed over: no record of ours
            return
        now_s = world.now_s
        key = (event.author, event.seq)
        k = self.index.get(key)
        if k is None:
            if not event.local:
                return  # the checker reports it
            k = self.index[key] = len(self.published_s)
            self.published_s.append(now_s)
            self.reached.append(0)
            self.last_s.append(now_s)
        mine = self.accepted[node.index]
        if len(mine) <= k:
            mine.extend(bytes(k + 1 - len(mine)))
        if mine[k]:  # lost in a crash (received records are LAZY writes) and taken again
            self.reaccepted += 1
            return
        mine[k] = 1
        self.held[node.index] += 1
        self.delivered += 1
        if now_s - self.published_s[k] <= 3 * self.config.heartbeat_s + 1e-9:
            self.on_time += 1
        self.last_s[k] = now_s
        self.reached[k] += 1
        if self.reached[k] == self.n_honest:
            self.full += 1
            if self.full == self.records:
                self.full_at_s = now_s

    def _behind(self, world: World) -> list[int]:
        """Honest nodes that lack a record, or are not up to hold them (the liveness
        phase heals every node: `heal_all`). A node that has accepted every record is
        asked whether its ledger still holds them all: a crash loses the records it had
        not synced (they are LAZY writes), and it takes them again from its peers."""
        total = len(self.published_s)
        held, honest = self.held, self.honest
        return [i for i, n in enumerate(world.nodes)
                if honest[i] and (not n.alive or n.paused or held[i] < total
                                  or not self._holds_all(i, n, total))]  # fmt: skip

    def _holds_all(self, i: int, node: SimNode[Any], total: int) -> bool:
        if self.whole.get(i) == (node.incarnation, total):
            return True
        core = node.core
        if not isinstance(core, GossipCore):
            return False
        if not all(core.ledger.has(author, seq) for author, seq in self.index):
            return False
        self.whole[i] = (node.incarnation, total)  # a crash (a new incarnation) asks again
        return True

    def converged(self, world: World) -> bool:
        return not self._behind(world)

    def liveness_detail(self, world: World) -> str:
        behind = self._behind(world)
        if not behind:
            return ""
        i, total = behind[0], len(self.published_s)
        node = world.nodes[i]
        state = "down" if not node.alive else "paused" if node.paused else "up"
        return (f"{len(behind)} honest nodes lack records or are not up, e.g. node {i} "
                f"({state}) holds {self.held[i]}/{total}")  # fmt: skip

    def metrics(self, world: World) -> dict[str, Metric]:
        pairs = max(1, self.records * self.n_honest)
        hb = self.config.heartbeat_s
        slowest: float | None = None
        if self.full == self.records and self.published_s:
            slowest = max(t - p for t, p in zip(self.last_s, self.published_s, strict=True))
        ae_rounds: float | None = None
        if self.repair_s >= 0 and self.full_at_s is not None:
            ae_s = hb * self.config.anti_entropy_every_hb
            ae_rounds = max(0.0, self.full_at_s - self.repair_s) / ae_s
        totals: dict[str, int] = {}
        for i, node in enumerate(world.nodes):
            core = node.core
            if self.honest[i] and isinstance(core, GossipCore):
                for name, value in core.stats().items():
                    totals[name] = totals.get(name, 0) + value
        out: dict[str, Metric] = {
            "case": self.case,
            "records_published": len(self.published_s),
            "records_not_published": self.lost_publishes,
            "delivered_fraction_at_3_heartbeats": self.on_time / pairs,
            "delivered_fraction_final": self.delivered / pairs,
            "records_accepted_again": self.reaccepted,
            "heartbeats_to_full_delivery": None if slowest is None else slowest / hb,
            "anti_entropy_rounds_to_converge": ae_rounds,
            "amplification": (self.checker.copies if self.checker else 0) / pairs,
            "signature_checks": self.memo.real_checks,
        }
        for name in (
            "invalid_signature",
            "non_member_peer",
            "non_member_author",
            "graylistings",
            "duplicates",
            "iwant_sent",
            "ae_rounds",
            "ae_pushed",
            "outbox_dropped",
        ):
            out[f"gossip_{name}"] = totals.get(name, 0)
        return out

    def sample(self, world: World) -> dict[str, float]:
        pairs = max(1, self.records * self.n_honest)
        return {"delivered_fraction": self.delivered / pairs}


class _SetPeers:
    __slots__ = ("peers",)

    def __init__(self, peers: tuple[NodeId, ...]) -> None:
        self.peers = peers

    def __call__(self, core: Any, now_s: float) -> None:
        core.set_peers(now_s, self.peers)


class _Publish:
    __slots__ = ("k", "scenario")

    def __init__(self, scenario: GossipScenario, k: int) -> None:
        self.scenario = scenario
        self.k = k

    def __call__(self, world: World) -> None:
        self.scenario.publish(world, self.k)


def _refresh_peers(world: World) -> None:
    scenario = world.scenario
    assert isinstance(scenario, GossipScenario)
    scenario.refresh_peers(world)
    world.schedule(world.now_s + PEER_REFRESH_S, _refresh_peers)


def _crash_all(world: World, nodes: list[int]) -> None:
    for i in nodes:
        world.nodes[i].crash()


def _restart_all(world: World, nodes: list[int]) -> None:
    for i in nodes:
        world.nodes[i].restart()


def _accept_any(env: Envelope) -> bool:
    return True
