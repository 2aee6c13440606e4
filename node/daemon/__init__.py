"""colonynode.node.daemon: the Trio side of a node, thin adapters around NodeCore.

- run.py: `run_daemon` and `Node`, one nursery of the adapters below;
- driver.py: the driver that runs a sans-IO core (receive -> step -> persist -> send ->
  answer) and answers `call`s by request id;
- host.py, p2p.py, wire.py: the libp2p host (Noise, Yamux), the transport (one long-lived
  stream per peer and channel, membership-gated) and its frames;
- http.py: the local HTTP API (typed requests to NodeCore);
- joining.py: the join protocol's request-and-answer stream.
"""

from colonynode.node.daemon.run import JoinFailed, Node, run_daemon

__all__ = ["JoinFailed", "Node", "run_daemon"]
