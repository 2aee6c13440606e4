"""What a running function can do (colonynode.sdk.context): print and log lines land in
its own process's buffer, other threads print as usual, attributes are kept."""

from __future__ import annotations

import io
import threading

import pytest

from colonynode.core.errors import ColonyError
from colonynode.sdk.context import (
    LINES_BUFFERED_MAX,
    ProcessContext,
    StdoutRouter,
    bind,
    current,
    log,
    set_attribute,
)


def test_print_in_a_process_thread_goes_to_its_log_and_elsewhere_to_stdout() -> None:
    real = io.StringIO()
    router = StdoutRouter(real)
    ctx = ProcessContext("p1", {})

    def work() -> None:
        bind(ctx)
        print("hello", 1, file=router)  # type: ignore[arg-type]
        log("from log")
        set_attribute("k", "v")
        router.write("no newline yet")
        bind(None)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    print("main thread", file=router)  # type: ignore[arg-type]
    assert real.getvalue() == "main thread\n"
    assert ctx.take() == (["hello 1", "from log"], [("k", "v")])
    assert ctx.take(final=True) == (["no newline yet"], [])


def test_outside_a_process_log_is_an_error() -> None:
    with pytest.raises(ColonyError, match="not inside a colony process"):
        current()
    with pytest.raises(ColonyError):
        log("x")


def test_the_buffer_is_bounded_and_says_what_it_dropped() -> None:
    ctx = ProcessContext("p", {})
    ctx.write("x\n" * (LINES_BUFFERED_MAX + 5))
    lines, _ = ctx.take(final=True)
    assert len(lines) == LINES_BUFFERED_MAX + 1
    assert lines[-1].startswith("[5 log lines dropped")
