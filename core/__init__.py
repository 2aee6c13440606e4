"""colonynode.core: ids, keys, codec, envelopes, the process model, limits, errors.

Depends on nothing else of ours and never on trio, libp2p, lmdb, sockets or the wall
clock: every protocol core and the simulator build on it.
"""
