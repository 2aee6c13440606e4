"""The child process of test_crash.py (run as a script, not collected by pytest).

    python _crash_child.py DATA_DIR write START   write batches START, START+1, ... forever,
                                                 printing each batch's number once durable
    python _crash_child.py DATA_DIR hold          open the store, print "ready", wait for
                                                 stdin to close, close the store

Batch i writes batch_records(i) records b"b%08d-%03d" % (i, j) = [i, j, n] to table
"crash" and b"head" = i to table "head", in one apply(sync=True).
"""

from __future__ import annotations

import sys

from colonynode.storage import LmdbStore


def batch_records(i: int) -> int:
    return 1 + (i * 7) % 20


def write(data_dir: str, start: int) -> None:
    # A small first map, so kills also land while the map grows.
    store = LmdbStore(data_dir, map_bytes_initial=64 << 10)
    i = start
    while True:
        n = batch_records(i)
        batch = [("crash", b"b%08d-%03d" % (i, j), [i, j, n]) for j in range(n)]
        store.apply([*batch, ("head", b"head", i)], sync=True)
        sys.stdout.write(f"{i}\n")
        sys.stdout.flush()
        i += 1


def hold(data_dir: str) -> None:
    store = LmdbStore(data_dir)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()
    store.close()


if __name__ == "__main__":
    if sys.argv[2] == "write":
        write(sys.argv[1], int(sys.argv[3]))
    else:
        hold(sys.argv[1])
