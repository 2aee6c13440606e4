"""The chaos run's workload: clients that submit calls through any node, recording each
submission as acknowledged (its pid) or unknown (an error or a timeout), and the views
read back once the colony is healed."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.node.apiclient import ApiClient
from colonynode.sdk import Client
from tests.chaos.check import (
    CRON_FUNCNAME,
    CRON_INTERVAL_S,
    FUNCNAME,
    GEN_FUNCNAME,
    GEN_TIMEOUT_S,
    GEN_TRIGGER,
    Final,
    Pack,
    Submission,
)
from tests.integration.harness import Daemon

REQUEST_TIMEOUT_S = 5.0  # a paused node's request gives up after this: unknown
PAGE = 1000
READERS = 8  # majority reads at once

FUNCTIONS = f"""
import random, time, uuid
from colonynode.sdk import function

@function
def {FUNCNAME}(log, i):
    time.sleep(random.uniform(0.0, 0.4))  # long enough to be running when faults strike
    nonce = uuid.uuid4().hex
    with open(log, "a") as f:  # one short O_APPEND write a run
        f.write(f"{{i}} {{nonce}}\\n")
    return [i * i, nonce]

@function
def {CRON_FUNCNAME}():
    return ["tick"]

@function
def {GEN_FUNCNAME}(*args):
    return list(args)  # (what a compacted view keeps of a batch: its output)
"""


def client_of(d: Daemon, timeout_s: float = REQUEST_TIMEOUT_S) -> Client:
    return Client(api=ApiClient.for_data_dir(d.dir, timeout_s=timeout_s))


class Workload:
    """`threads` clients, together about `rate` submissions a second, each to a node
    drawn at random among those the nemesis has not killed (a paused or cut node is
    tried, and times out)."""

    def __init__(self, daemons: dict[str, Daemon], exec_log: str, rate: float,
                 threads: int, seed: int, avoid: Any) -> None:  # fmt: skip
        self.daemons = daemons
        self.exec_log = exec_log
        self.period_s = threads / rate
        self.threads = threads
        self.seed = seed
        self.avoid = avoid  # () -> set of node names not to use now
        self.history: list[Submission] = []
        self._lock = threading.Lock()
        self._next_i = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for k in range(self.threads):
            t = threading.Thread(target=self._client, args=(k,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=REQUEST_TIMEOUT_S * 3)

    def _client(self, k: int) -> None:
        rng = random.Random(self.seed * 1000 + k)
        next_s = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                i, self._next_i = self._next_i, self._next_i + 1
            choices = sorted(set(self.daemons) - self.avoid()) or sorted(self.daemons)
            self._submit(i, rng.choice(choices))
            next_s += self.period_s
            self._stop.wait(max(0.0, next_s - time.monotonic()))  # pacing, not a wait for state

    def _submit(self, i: int, node: str) -> None:
        spec = {"funcname": FUNCNAME, "args": [self.exec_log, i], "maxretries": -1,
                "conditions": {"executortype": "py"}}  # fmt: skip
        sub = Submission(i, node, time.monotonic(), 0.0)
        try:
            with client_of(self.daemons[node]) as client:
                sub.pid = str(client.submit(spec)["processid"])
        except (ColonyError, OSError) as exc:
            sub.error = f"{type(exc).__name__}: {exc}"[:200]
        sub.end_s = time.monotonic()
        with self._lock:
            self.history.append(sub)


def view_of(d: Daemon) -> dict[str, dict[str, Any]]:
    """Every process in `d`'s view, by pid (paged)."""
    out: dict[str, dict[str, Any]] = {}
    with client_of(d, timeout_s=30.0) as client:
        while True:
            page = client.list(limit=PAGE, offset=len(out))
            out.update((p["processid"], p) for p in page)
            if len(page) < PAGE:
                return out


def read_final(daemons: dict[str, Daemon], acked: list[str], rng: random.Random) -> Final:
    final = Final()
    for name, d in sorted(daemons.items()):
        try:
            final.views[name] = view_of(d)
            with client_of(d) as client:
                final.peers[name] = int(client.api.get("/v1/status")["connected_peers"])
        except (ColonyError, OSError) as exc:
            final.views[name] = None
            final.unanswered[name] = str(exc)[:200]
    answering = [d for n, d in sorted(daemons.items()) if final.views.get(n) is not None]

    def read(pid: str, d: Daemon) -> dict[str, Any] | None:
        try:
            with client_of(d, timeout_s=30.0) as client:
                return client.get(pid, consistent=True)
        except ColonyError:
            return None

    asked = [(pid, rng.choice(answering)) for pid in acked] if answering else []
    with ThreadPoolExecutor(READERS) as pool:  # a read may wait out a straggler (5 s)
        for (pid, _), got in zip(asked, pool.map(lambda a: read(*a), asked), strict=True):
            final.majority[pid] = got
    for pid in acked:
        final.majority.setdefault(pid, None)
    return final


def all_done(daemons: dict[str, Daemon], acked: set[str]) -> bool:
    """Is every node connected to every other, and every acknowledged pid SUCCESS in
    every node's view?"""
    for d in daemons.values():
        try:
            with client_of(d) as client:
                if client.api.get("/v1/status")["connected_peers"] < len(daemons) - 1:
                    return False
            view = view_of(d)
        except (ColonyError, OSError):
            return False
        if any(view.get(pid, {}).get("state") != "SUCCESS" for pid in acked):
            return False
    return True


def add_cron(d: Daemon) -> str:
    """A cron of one `tick` step every CRON_INTERVAL_S; its id."""
    spec = {"nodename": "tick", "funcname": CRON_FUNCNAME, "maxretries": -1,
            "conditions": {"executortype": "py"}}  # fmt: skip
    with client_of(d, timeout_s=30.0) as client:
        return str(client.add_cron("chaos-tick", [spec], interval_s=CRON_INTERVAL_S)["cronid"])


def listed(daemons: dict[str, Daemon], **filters: str) -> list[dict[str, Any]]:
    """The processes matching `filters` (cronid, generatorid) in every node's view that
    answers (the newest 1,000 of each)."""
    out: list[dict[str, Any]] = []
    for d in daemons.values():
        try:
            with client_of(d) as client:
                out += client.list(limit=1000, **filters)
        except (ColonyError, OSError):
            continue
    return out


def ticked_since(daemons: dict[str, Daemon], cronid: str, since: str) -> bool:
    """Has some node seen a tick of the cron at or after `since` (RFC 3339 text)?"""
    return any(str(p.get("submissiontime")) >= since for p in listed(daemons, cronid=cronid))


def add_generator(d: Daemon) -> str:
    """A generator of one `batch` step: GEN_TRIGGER args a batch, or GEN_TIMEOUT_S."""
    spec = {"nodename": "batch", "funcname": GEN_FUNCNAME, "maxretries": -1,
            "conditions": {"executortype": "py"}}  # fmt: skip
    with client_of(d, timeout_s=30.0) as client:
        made = client.add_generator("chaos-batch", [spec], trigger=GEN_TRIGGER,
                                    timeout_s=GEN_TIMEOUT_S)  # fmt: skip
    return str(made["generatorid"])


class Paced:
    """One client thread: `step(node)` through a random node the nemesis has not killed,
    `rate` times a second, until stopped."""

    def __init__(self, daemons: dict[str, Daemon], rate: float, rng: random.Random,
                 avoid: Any, stop_s: float = REQUEST_TIMEOUT_S * 3) -> None:  # fmt: skip
        self.daemons, self.period_s, self.rng, self.avoid = daemons, 1.0 / rate, rng, avoid
        self.stop_s = stop_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.stop_s)

    def step(self, node: str) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        next_s = time.monotonic()
        while not self._stop.is_set():
            choices = sorted(set(self.daemons) - self.avoid()) or sorted(self.daemons)
            self.step(self.rng.choice(choices))
            next_s += self.period_s
            self._stop.wait(max(0.0, next_s - time.monotonic()))  # pacing, not a wait for state


class Packer(Paced):
    """One client packing args into the generator through random nodes, `rate` a second,
    recording each as acknowledged or unknown."""

    def __init__(self, daemons: dict[str, Daemon], generatorid: str, rate: float, seed: int,
                 avoid: Any) -> None:  # fmt: skip
        super().__init__(daemons, rate, random.Random(seed * 7919), avoid)
        self.generatorid = generatorid
        self.packs: list[Pack] = []

    def step(self, node: str) -> None:
        pack = Pack(f"arg-{len(self.packs)}", node)
        try:
            with client_of(self.daemons[pack.node]) as client:
                client.pack(self.generatorid, pack.arg)
            pack.ok = True
        except (ColonyError, OSError) as exc:
            pack.error = f"{type(exc).__name__}: {exc}"[:200]
        self.packs.append(pack)


def batched(daemons: dict[str, Daemon], generatorid: str, args: set[str]) -> bool:
    """Is every one of `args` in a batch of the generator, in some node's view?"""
    seen: set[str] = set()
    for p in listed(daemons, generatorid=generatorid):
        seen.update((p.get("spec") or {}).get("args") or [])
    return args <= seen
