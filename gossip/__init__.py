"""colonynode.gossip: the sans-IO gossip core (DESIGN.md §7, docs/gossip.md).

- `GossipCore`: the state machine (`on_message`, `on_tick`, `take_effects`), with the
  application calls `publish`, `publish_envelope`, `set_peers`, `stats`;
- `GossipConfig`: parameters, with `lan()`, `wan()` and `local()` presets;
- `Accepted`: the event of a newly held record;
- `RecordBody`, `SeqRange`, `RECORD_DOMAIN`, `seal_record`, `open_body`: records;
- `CODEC` and the messages: the wire format.
"""

from colonynode.gossip.config import GossipConfig
from colonynode.gossip.core import COUNTERS, VOID_KIND, GossipCore, Verify, verify_record
from colonynode.gossip.events import Accepted
from colonynode.gossip.messages import (
    CODEC,
    Digest,
    Gone,
    Graft,
    IHave,
    IWant,
    MessageTag,
    Prune,
    Push,
    Summary,
)
from colonynode.gossip.records import (
    ENVELOPE_KIND,
    RECORD_DOMAIN,
    RecordBody,
    RecordId,
    SeqRange,
    envelope_from_body,
    envelope_to_body,
    open_body,
    ranges_of,
    seal_record,
)

__all__ = [
    "CODEC",
    "COUNTERS",
    "ENVELOPE_KIND",
    "RECORD_DOMAIN",
    "VOID_KIND",
    "Accepted",
    "Digest",
    "Gone",
    "GossipConfig",
    "GossipCore",
    "Graft",
    "IHave",
    "IWant",
    "MessageTag",
    "Prune",
    "Push",
    "RecordBody",
    "RecordId",
    "SeqRange",
    "Summary",
    "Verify",
    "envelope_from_body",
    "envelope_to_body",
    "open_body",
    "ranges_of",
    "seal_record",
    "verify_record",
]
