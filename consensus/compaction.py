"""Compaction: a voter drops the closed registers it no longer needs (docs/consensus.md).

A closed register matters to the voters for a while after the close: a retransmitted
close or claim is answered from it, and a voter-set change hands it over. The outcome
and output live on in every node's process view (gossip), so a voter drops a closed
register `retention_s` after it saw it closed (its own monotonic time; a restart counts
as seeing it anew), or after `pressed_s` once it holds `pressed_fraction` of
`registers_max`. Without this a voter that had taken `registers_max` submissions
refused every new one (FULL) for good.

Dropping must not let the process run again. A register comes back only three ways: a
`Submit` (the submitter's, retransmitted late), a `Merge` (repair) and a handover page,
the last two only from a voter that holds it. So a voter drops a register only when:

- **Every voter of its set holds the same result, or nothing.** Before it drops closed
  registers, a voter asks every other voter of the set it serves (`Compact`, with a
  digest of each result); each answers which of them it holds closed with that result
  or not at all (`CompactAnswer`), and one that holds one open, or closed otherwise, is
  sent this voter's closed copy (a `Merge`: it closes an open one; one that holds
  another result adopts this one when a majority holds it, `Merge.majority`, the
  committed result; else split.py). Only once every other voter said so for a pid is it
  dropped here. So no handover page of this set, and no repair from it, can carry the
  process open again: a page or a copy comes from a voter of the set, and none holds it
  open (a set change stops the round: answers name the version they were given under).
  And the result is one: the voter's node announces it if its view has not heard it
  (`Compacted.views`: nobody could read it afterwards). A pid not agreed on after
  ASKS_MAX asks waits another retention (a voter that is down holds up compaction until
  it is back or replaced: voters auto replaces it after its grace; a pinned set with a
  voter down for long fills to `registers_max` and refuses FULL, as before).
- **The horizon**, against a late `Submit`. Each register's terms carry `seq`, the
  submitter's wall-clock time of the submission (ns). A voter keeps a horizon: the
  highest `seq` among the registers it dropped or was asked about (`Compact.horizon`,
  raised before it answers, durable with its answer; a new voter takes the highest of
  its handover pages'). A `Submit` of a pid it does not hold with `seq` at or below its
  horizon is refused COMPACTED. Every pid dropped anywhere has its `seq` at or below the
  horizon of every voter of the set before it is dropped, so a late `Submit` of it
  (a submitter paused with the frame queued) finds no voter to take it, and with no
  open copy anywhere, no repair or page can make one. The cost: a submitter whose clock
  is behind another submitter's by more than the retention (at least `pressed_s`) is
  refused COMPACTED. Merges and handover pages are taken whatever their `seq` (the
  voters' repair of an old open process must go on: the claims scenario under chaos
  stalled on one when merges were refused too).
- **Promises**, against a late copy. A voter that answered "the same, or none" for a pid
  (or dropped it) takes no open copy of it, by Merge or Submit, for a retention: one
  sent before the drop and delivered late is refused.
- **Series horizons**, against a tick fired again. A cron tick's process has its pid
  from the tick: any member may submit it, late, with the tick's time as its `seq`. Its
  terms name the cron (`series`), whose ticks come in `seq` order, and the voter keeps
  a horizon per series (raised as the horizon is, with `Compact.series`; a new voter
  takes its old voter's with the last handover page): a Submit of the series at or
  below it is refused COMPACTED (the firing node takes that as fired long ago). The
  global horizon does not apply to a series (a tick fired late, after the previous
  graph, has a `seq` older than ordinary processes dropped meanwhile), nor a series
  horizon to anything else. At most `SERIES_MAX` series: the ticks of more are kept.
- **Pins**, for what the application still needs. The voter's application may pin a
  register (`Pinned`, a pure function of the voter's state: a generator's arg under a
  lease or closed as a batch's whose workflow is not held yet, node/core/
  generator_defs.py `pinned`). A pinned register of a series is a floor: no register
  of that series with a `seq` at or above it is dropped, nor agreed to (`on_compact`
  agrees to none of a series asked about at or above its floor, and does not raise that
  series' horizon), so the series' horizon stays below the floor at the voter. The
  first Submit of what the pinned register waits for (a batch's decision and workflow,
  with a `seq` above the floor) is then never refused COMPACTED by this voter; once it
  is held the pin goes, and a later Submit of it, after it was dropped, is fenced as
  any other. A grant names the series' horizon at the granting voter
  (`Verdict.horizon`), so that the batch can take a `seq` above it.
- **Only what can be fenced** (`ProcessTerms.compactable`): not a register with a `tick`
  but no series (the same process may be submitted again, with a new `seq`, and only
  the register says it ran), not a `kept` one (definitions, read back after they
  closed), and not one submitted
  "after" this voter's clock (a submitter's clock far ahead would raise every horizon
  past the submissions to come). A generator's args, batch decisions and batch
  workflows are each a series of their generator (`seq`: pack time, and the batch's),
  held back by pins until the batch's workflow is held.

Part of the voter: pure functions of the voter's state, no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import TYPE_CHECKING, Any

from colonynode.consensus import register as rg
from colonynode.consensus.events import Compacted
from colonynode.consensus.messages import (
    COMPACT_PIDS_MAX,
    SERIES_MAX,
    Cert,
    Compact,
    CompactAnswer,
    Merge,
    ProcessTerms,
    RegisterView,
)
from colonynode.consensus.register import Register
from colonynode.core.ids import NodeId

if TYPE_CHECKING:
    from colonynode.consensus.voter import VoterCore

__all__ = ["ASKS_MAX", "ASK_AGAIN_S", "PRESSED_S", "RETENTION_S", "Compaction", "Pinned",
           "Retention", "unpinned"]  # fmt: skip

# pinned(voter, register, now_s): does the application still need this register, and
# every later one of its series (see "Pins" above)? Pure: the voter's state and now_s.
# A closed register once found unpinned stays so (it is not asked again).
Pinned = Callable[["VoterCore", Register, float], bool]


def unpinned(voter: VoterCore, reg: Register, now_s: float) -> bool:
    return False


ASK_AGAIN_S = 2.0  # a Compact not answered by every voter is asked again after this
ASKS_MAX = 5  # ... this many times; the pids not agreed on then wait another retention
PROMISED_MAX = 200_000  # pids promised (see Compaction.promised); the oldest go first
RETENTION_S = 600.0  # a closed register is kept this long after this voter saw it closed
PRESSED_S = 60.0  # ... or this long, once the table is pressed_fraction full


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a voter keeps a closed register (see the module docstring).

    The defaults: a process closed ten minutes ago is long past any retransmission, and
    every node's view holds its outcome; under pressure, one minute (the submitters'
    clocks must then agree within about a minute, as NTP keeps them)."""

    retention_s: float = RETENTION_S
    pressed_s: float = PRESSED_S
    pressed_fraction: float = 0.75

    def __post_init__(self) -> None:
        assert 0.0 <= self.pressed_s <= self.retention_s, "pressed_s within retention_s"
        assert 0.0 < self.pressed_fraction <= 1.0

    @classmethod
    def of(cls, retention_s: float) -> Retention:
        """`retention_s` (a node's setting), pressed no shorter than the default's
        one minute, unless the retention itself is shorter."""
        retention_s = max(retention_s, 0.0)
        return cls(retention_s, min(retention_s, PRESSED_S))


@dataclass(slots=True)
class Compaction:
    """One voter's compaction: when its closed registers closed, and the round under way."""

    retention: Retention = field(default_factory=Retention)
    horizon: int = 0  # durable in the voter's meta record
    series: dict[bytes, int] = field(default_factory=dict)  # series -> its horizon (ditto)
    # closed registers held here, in the order this voter saw them closed: pid -> when
    closed_s: OrderedDict[bytes, float] = field(default_factory=OrderedDict)
    by_series: dict[bytes, set[bytes]] = field(default_factory=dict)  # registers held
    unpinned: set[bytes] = field(default_factory=set)  # closed ones found unpinned
    # the round under way: the pids asked about, the voters that agreed (the same result
    # or none), and those of them that hold the same result
    asked: dict[bytes, set[NodeId]] = field(default_factory=dict)
    holding: dict[bytes, dict[NodeId, bytes]] = field(default_factory=dict)  # -> its sig
    asked_version: int = 0
    asks: int = 0
    ask_again_s: float = 0.0
    # pids this voter said it holds closed or not at all, or dropped: an open copy of one
    # that comes after (a Merge or a Submit sent before, delayed) is refused, until then
    promised: OrderedDict[bytes, float] = field(default_factory=OrderedDict)
    dropped: int = 0
    refused: int = 0  # Submits and Merges refused by the horizon or a promise
    adopted: int = 0  # minority results replaced by a majority's
    stale: int = 0  # registers of an older set forgotten at a handover (forget_dropped)

    def saw_closed(self, reg: Register, now_s: float, unix_ns: int | None = None) -> None:
        """A register closed here. Not an ordinary process (`compactable`) is never
        dropped, nor one whose submission time is ahead of this voter's clock (that
        seq would raise every voter's horizon past the submissions to come)."""
        if reg.pid in self.closed_s or not reg.terms.compactable:
            return
        if not self.has_room(reg.terms.series):
            return
        if unix_ns is not None and reg.terms.seq > unix_ns:
            return
        self.closed_s[reg.pid] = now_s

    def index(self, reg: Register) -> None:
        """A register held here (new or changed: asked again whether it is pinned)."""
        self.unpinned.discard(reg.pid)
        if reg.terms.series:
            self.by_series.setdefault(reg.terms.series, set()).add(reg.pid)

    def unindex(self, reg: Register) -> None:
        self.unpinned.discard(reg.pid)
        pids = self.by_series.get(reg.terms.series)
        if pids is not None:
            pids.discard(reg.pid)
            if not pids:
                del self.by_series[reg.terms.series]

    def of(self, reg: Register) -> int:
        """The horizon of a register's series here (-1: none, or not of a series)."""
        return self.series.get(reg.terms.series, -1) if reg.terms.series else -1

    def floor(self, voter: VoterCore, series: bytes, now_s: float) -> int | None:
        """The lowest seq of a pinned register of `series` held here (None: none)."""
        seqs = []
        for pid in self.by_series.get(series, ()):
            reg = voter.registers.get(pid)
            if reg is None or reg.terms.series != series or pid in self.unpinned:
                continue
            if voter.pinned(voter, reg, now_s):
                seqs.append(reg.terms.seq)
            elif reg.closed:
                self.unpinned.add(pid)
        return min(seqs) if seqs else None

    def below(self, voter: VoterCore, series: bytes, seq: int, now_s: float,
              floors: dict[bytes, int | None]) -> bool:  # fmt: skip
        """May a register at `seq` of `series` go, as far as pins go: not of a series,
        or below its series' floor? (`floors`: the floors found so far, this step.)"""
        if not series or series not in self.by_series:
            return True
        if series not in floors:
            floors[series] = self.floor(voter, series, now_s)
        f = floors[series]
        return f is None or seq < f

    def promise(self, pid: bytes, now_s: float) -> None:
        self.promised.pop(pid, None)
        self.promised[pid] = now_s + self.retention.retention_s
        while len(self.promised) > PROMISED_MAX:
            self.promised.popitem(last=False)

    def refuses(
        self, terms: ProcessTerms, now_s: float, *, submit: bool, fence_series: bool = True
    ) -> bool:
        """An open copy (`submit`: a Submit) of a pid not held here that may be one
        dropped: promised, or (a Submit) at or below the horizon (its series' if it has
        one). Only what `ProcessTerms.compactable` says is ever dropped. (`fence_series`
        False: the planted bug ``series_unfenced``, for the simulator's checkers.)"""
        if not terms.compactable:
            return False
        until_s = self.promised.get(terms.pid)
        refused = until_s is not None and now_s < until_s
        if submit:
            refused = refused or self.fenced(terms, fence_series=fence_series)
        self.refused += refused
        return refused

    def fenced(self, terms: ProcessTerms, *, fence_series: bool = True) -> bool:
        """Is `terms`'s seq at or below its horizon (its series', if it has one), so
        that it may be one dropped?"""
        if terms.series:
            return fence_series and terms.seq <= self.series.get(terms.series, -1)
        return self.horizon > 0 and 0 < terms.seq <= self.horizon

    def end_round(self) -> None:
        self.asked.clear()
        self.holding.clear()

    def expire_promises(self, now_s: float) -> None:
        while self.promised:
            pid, until_s = next(iter(self.promised.items()))
            if until_s > now_s:
                return
            del self.promised[pid]

    def raise_horizon(self, seq: int) -> bool:
        if seq <= self.horizon:
            return False
        self.horizon = seq
        return True

    def has_room(self, series: bytes) -> bool:
        """May a register of `series` be dropped (b"": not a series)? Its horizon must
        be kept, and at most SERIES_MAX are."""
        return not series or series in self.series or len(self.series) < SERIES_MAX

    def raise_series(self, series: bytes, seq: int, *, kept: bool = False) -> bool:
        """`kept`: an old voter's, taken whatever the room (they fence its drops)."""
        assert kept or self.has_room(series), "a series horizon is raised only with room"
        if seq <= self.series.get(series, -1):
            return False
        self.series[series] = seq
        return True

    def raise_of(self, terms: ProcessTerms) -> bool:
        """Raise the horizon a dropped register's Submit is refused by: its series'
        or the global one."""
        if terms.series:
            return self.raise_series(terms.series, terms.seq)
        return self.raise_horizon(terms.seq)

    def next_wake_s(self, registers: int, registers_max: int) -> float | None:
        if self.asked:
            return self.ask_again_s
        if not self.closed_s:
            return None
        first = next(iter(self.closed_s.values()))
        return first + self._keep_s(registers, registers_max)

    def _keep_s(self, registers: int, registers_max: int) -> float:
        r = self.retention
        pressed = registers >= r.pressed_fraction * registers_max
        return r.pressed_s if pressed else r.retention_s

    def due(self, voter: VoterCore, now_s: float) -> list[bytes]:
        """The closed registers past their retention, oldest first (at most one Compact's
        worth); entries no longer closed here are forgotten on the way."""
        keep_s = self._keep_s(len(voter.registers), voter.registers_max)
        out: list[bytes] = []
        gone: list[bytes] = []
        later: list[bytes] = []
        floors: dict[bytes, int | None] = {}
        for pid, closed_s in self.closed_s.items():  # (oldest first: stops at the first
            if now_s - closed_s < keep_s or len(out) >= COMPACT_PIDS_MAX:  # one not due)
                break
            reg = voter.registers.get(pid)
            if reg is None or not reg.closed:
                gone.append(pid)
            elif pid in voter.frozen or not self.below(voter, *_at(reg), now_s, floors):
                later.append(pid)  # (a retention later: its wake must move on)
            else:
                out.append(pid)
        for pid in gone:
            del self.closed_s[pid]
        for pid in later:
            del self.closed_s[pid]
            self.closed_s[pid] = now_s
        return out


# -- the voter's side: asking, answering, dropping ---------------------------------------


def on_tick(voter: VoterCore, now_s: float) -> None:
    """Start a round for the registers past retention, or ask again the voters out."""
    c = voter.compaction
    c.expire_promises(now_s)
    if not voter.serves or voter.handover is not None:
        c.end_round()  # a set change stops the round (a frozen process is only skipped:
        return  # one frozen for good, its deciding voter dead, once stopped it for good)
    if c.asked and c.asked_version != voter.serving:
        c.end_round()
    if c.asked and now_s >= c.ask_again_s and c.asks >= ASKS_MAX:
        for pid in sorted(c.asked):  # not agreed on: try again a retention later
            if c.closed_s.pop(pid, None) is not None:
                c.closed_s[pid] = now_s
        c.end_round()
    if c.asked:
        if now_s >= c.ask_again_s:
            _ask(voter, now_s, sorted(c.asked))
        return
    pids = c.due(voter, now_s)
    if not pids:
        return
    others = [v for v in voter.vset.voters if v != voter.node_id]
    if not others or voter.planted_bug == "compact_unasked":  # (alone: nobody else could
        _drop(voter, now_s, pids)  # hold a copy; the bug: the simulator's checkers' test)
        return
    c.asked = {pid: set() for pid in pids}
    c.asked_version = voter.serving
    c.asks = 0
    _ask(voter, now_s, pids)


def _at(reg: Register) -> tuple[bytes, int]:
    return reg.terms.series, reg.terms.seq


def result_of(reg: Register) -> bytes:
    """A digest of a closed register's result (what split.py compares: commit_key)."""
    key = repr(rg.commit_key(rg.view(reg))).encode()
    return hashlib.blake2b(key, digest_size=8).digest()


def _ask(voter: VoterCore, now_s: float, pids: list[bytes]) -> None:
    c = voter.compaction
    c.asks += 1
    c.ask_again_s = now_s + ASK_AGAIN_S
    held = [p for p in pids if p in voter.registers]
    terms = [voter.registers[p].terms for p in held]
    horizon = max((t.seq for t in terms if not t.series), default=0)
    series: dict[bytes, int] = {}
    for t in terms:
        if t.series:
            series[t.series] = max(series.get(t.series, t.seq), t.seq)
    results = tuple(result_of(voter.registers[p]) for p in held)
    msg = Compact(voter.serving, tuple(held), horizon, results, tuple(sorted(series.items())))
    for to in voter.vset.voters:
        if to != voter.node_id and any(to not in c.asked[p] for p in held):
            voter.effects.sends.append((to, msg))


def on_compact(voter: VoterCore, now_s: float, sender: NodeId, msg: Compact) -> None:
    """Another voter of this set asks which of `msg.pids` this voter holds open."""
    if not voter.serves or msg.version != voter.serving or sender not in voter.vset.voters:
        return
    c = voter.compaction
    raised = c.raise_horizon(msg.horizon)
    kept = set()  # the series whose horizons this voter keeps (raised before it answers)
    floors: dict[bytes, int | None] = {}
    pinned = set()  # series asked about at or above a pin here: agreed only below it
    for series, seq in msg.series:
        if not c.has_room(series):
            continue
        kept.add(series)
        if c.below(voter, series, seq, now_s, floors):
            raised = c.raise_series(series, seq) or raised
        else:
            pinned.add(series)
    agree, same, sigs = [], [], []
    for pid, result in zip(msg.pids, msg.results, strict=True):
        reg = voter.registers.get(pid)
        if pid in voter.frozen or (reg is not None and not reg.closed):
            continue
        if reg is not None and reg.terms.series and reg.terms.series not in kept:
            continue  # (no room for its horizon: it stays)
        if reg is None and (len(kept) < len(msg.series) or pinned):
            continue  # (it may be of a series whose horizon is not kept here, or pinned)
        if reg is not None and result_of(reg) != result:
            continue
        if reg is not None and reg.terms.series in pinned:
            if not c.below(voter, *_at(reg), now_s, floors):
                continue
            raised = c.raise_of(reg.terms) or raised  # (only as far as it agrees)
        agree.append(pid)
        if reg is not None:
            same.append(pid)
            sigs.append(reg.sig)  # (the asker's certificate of it, if it drops it)
        c.promise(pid, now_s)  # no open copy of it from now on: it may be dropped
    if raised:
        voter.save_meta()  # durable with the answer (it is sent after the writes)
    answer = CompactAnswer(msg.version, tuple(agree), tuple(same), tuple(sigs))
    voter.effects.sends.append((sender, answer))


def on_answer(voter: VoterCore, now_s: float, sender: NodeId, msg: CompactAnswer) -> None:
    """A voter's answer: count it; send the closed copy to one that holds it open (or
    closed otherwise); drop what every other voter holds the same or not at all."""
    c = voter.compaction
    if not voter.serves or not c.asked:
        return
    if msg.version != c.asked_version or msg.version != voter.serving:
        return
    said = set(msg.pids)
    same = dict(zip_longest(msg.same, msg.sigs, fillvalue=b""))  # (an older voter's: none)
    majority = len(voter.vset.voters) // 2 + 1
    for pid, voters in c.asked.items():
        if pid in said:
            voters.add(sender)
            if pid in same:
                c.holding.setdefault(pid, {})[sender] = same[pid]
        elif (reg := voter.registers.get(pid)) is not None and reg.closed:
            # (held by a majority, this result is the committed one: the voter with
            # another adopts it, split.py leaves a minority's result alone otherwise)
            held = len(c.holding.get(pid, ())) + 1 >= majority
            voter.effects.sends.append((sender, Merge(rg.to_copy(reg), voter.serving, held)))
    others = {v for v in voter.vset.voters if v != voter.node_id}
    done = sorted(pid for pid, voters in c.asked.items() if voters >= others)
    holders = {}
    for pid in done:
        del c.asked[pid]
        holders[pid] = c.holding.pop(pid, {})
    _drop(voter, now_s, done, holders)


def forget_dropped(voter: VoterCore, h: Any) -> None:
    """A handover to a new set completed: forget the registers this voter kept from an
    older set it served that no old voter's page named, at or below the horizons the
    pages brought. The old set dropped them (every voter of that set agreed, and
    raised its horizons first), or never held them (never acknowledged); kept, a stale
    open copy came back into the new set and ran again (voters chaos seed 51 with
    `retention_s=3`: a double commit, and the voter that returned after the drop
    repaired the others with it)."""
    c = voter.compaction
    for pid in sorted(voter.registers.keys() - h.seen - voter.frozen):
        terms = voter.registers[pid].terms
        if terms.compactable and c.fenced(terms):
            c.closed_s.pop(pid, None)
            c.stale += 1
            voter.forget(pid)


def _drop(voter: VoterCore, now_s: float, pids: list[bytes],
          holders: dict[bytes, dict[NodeId, bytes]] | None = None) -> None:  # fmt: skip
    """Drop these registers (every other voter agreed); `holders`: the voters that
    hold each one's result, with their signatures of it (its certificate, with this
    voter's, for the announcement of a result nobody can read after this)."""
    c = voter.compaction
    dropped: list[bytes] = []
    views: list[RegisterView] = []
    certs: list[Cert] = []
    floors: dict[bytes, int | None] = {}
    for pid in pids:
        reg = voter.registers.get(pid)
        c.closed_s.pop(pid, None)
        if reg is None or not reg.closed or pid in voter.frozen:
            continue
        if not c.has_room(reg.terms.series):
            continue  # (its series' horizon could not be kept: it stays)
        if not c.below(voter, *_at(reg), now_s, floors):
            c.closed_s[pid] = now_s  # (pinned since it was asked about: a retention later)
            continue
        c.raise_of(reg.terms)
        c.promise(pid, now_s)
        voter.forget(pid)
        dropped.append(pid)
        views.append(rg.view(reg))
        held = (holders or {}).get(pid, {})
        certs.append(tuple((v, sig) for v, sig in ((voter.node_id, reg.sig), *held.items())
                           if sig))  # fmt: skip
    if dropped:
        c.dropped += len(dropped)
        voter.save_meta()
        voter.effects.events.append(Compacted(tuple(dropped), voter.serving, tuple(views),
                                              tuple(certs)))  # fmt: skip
