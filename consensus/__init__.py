"""colonynode.consensus: the sans-IO lease-register core (DESIGN.md §6, docs/consensus.md).

- `ConsensusCore` (lease.py): one node's core, claimer always, voter when the roster
  names it; the driver runs it like every core (`on_message`, `on_tick`, `take_effects`);
- `VoterCore` (voter.py), `ClaimerCore` (claimer.py): the two roles;
- register.py: one process's register and its transition table (pure functions);
- requests.py: what the application asks (`ConsensusCore.request(now_s, req) -> id`);
- messages.py: the wire format (`CODEC`); events.py: what the application hears;
- quorum.py (the one vote tally), held.py (leases held), repair.py (who pushes what).
"""

from colonynode.consensus.claimer import ClaimerConfig, ClaimerCore
from colonynode.consensus.events import (
    Cancelled,
    ClaimFailed,
    Closed,
    Dropped,
    Expired,
    Granted,
    LeaseEnded,
    ReadResult,
    Released,
    Renewed,
    Submitted,
    VoterCommitted,
    VotersChanged,
)
from colonynode.consensus.lease import ConsensusCore
from colonynode.consensus.messages import CODEC, Outcome, ProcessTerms, Reason, State
from colonynode.consensus.register import Timing
from colonynode.consensus.requests import (
    CancelProcess,
    ChangeVoters,
    ClaimLeases,
    CloseProcess,
    DropLease,
    ExpireProcess,
    ReadRegister,
    ReleaseAll,
    ReleaseLease,
    Request,
    SubmitProcess,
)
from colonynode.consensus.voter import REGISTERS_TABLE, VoterCore

__all__ = [
    "CODEC",
    "REGISTERS_TABLE",
    "CancelProcess",
    "Cancelled",
    "ChangeVoters",
    "ClaimFailed",
    "ClaimLeases",
    "ClaimerConfig",
    "ClaimerCore",
    "CloseProcess",
    "Closed",
    "ConsensusCore",
    "DropLease",
    "Dropped",
    "ExpireProcess",
    "Expired",
    "Granted",
    "LeaseEnded",
    "Outcome",
    "ProcessTerms",
    "ReadRegister",
    "ReadResult",
    "Reason",
    "ReleaseAll",
    "ReleaseLease",
    "Released",
    "Renewed",
    "Request",
    "State",
    "SubmitProcess",
    "Submitted",
    "Timing",
    "VoterCommitted",
    "VoterCore",
    "VotersChanged",
]
