"""colonynode.consensus: the sans-IO lease-register core (DESIGN.md §6, docs/consensus.md).

- `ConsensusCore` (lease.py): one node's core, claimer always, voter when the roster
  names it; the driver runs it like every core (`on_message`, `on_tick`, `take_effects`);
- `VoterCore` (voter.py), `ClaimerCore` (claimer.py): the two roles;
- register.py: one process's register and its transition table (pure functions);
- messages.py: the wire format (`CODEC`); events.py: what the application hears.
"""

from colonynode.consensus.claimer import ClaimerConfig, ClaimerCore
from colonynode.consensus.events import (
    Cancelled,
    ClaimFailed,
    Closed,
    Expired,
    Granted,
    LeaseEnded,
    ReadResult,
    Renewed,
    Submitted,
    VoterCommitted,
)
from colonynode.consensus.lease import ConsensusCore
from colonynode.consensus.messages import CODEC, Outcome, ProcessTerms, Reason, State
from colonynode.consensus.register import Timing
from colonynode.consensus.voter import REGISTERS_TABLE, VoterCore

__all__ = [
    "CODEC",
    "REGISTERS_TABLE",
    "Cancelled",
    "ClaimFailed",
    "ClaimerConfig",
    "ClaimerCore",
    "Closed",
    "ConsensusCore",
    "Expired",
    "Granted",
    "LeaseEnded",
    "Outcome",
    "ProcessTerms",
    "ReadResult",
    "Reason",
    "Renewed",
    "State",
    "Submitted",
    "Timing",
    "VoterCommitted",
    "VoterCore",
]
