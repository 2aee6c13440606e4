"""Functions run in a worker process (colonynode.sdk.runners): what they print, from any
thread, and log and set come back; a run that must stop is killed for real; a worker
that dies fails the run and the next run gets a new one; the worker ends with its
executor even when the executor is SIGKILLed."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from colonynode.sdk.context import ProcessContext
from colonynode.sdk.functions import FunctionError
from colonynode.sdk.runners import ProcessRunner, ThreadRunner
from tests.integration.harness import pid_alive, wait_until

FUNCTIONS = """
import os
import threading
import time
from colonynode.sdk import function, log, set_attribute

@function
def add(a, b):
    print("adding", a, b)
    t = threading.Thread(target=lambda: print("from a thread"))
    t.start()
    t.join()
    log("logged")
    set_attribute("k", "v")
    return a + b

@function
def spin(pid_file):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    while True:
        pass

@function
def crash():
    os._exit(3)

@function
def boom():
    raise KeyError("x")
"""


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[ProcessRunner]:
    path = tmp_path / "functions.py"
    path.write_text(FUNCTIONS)
    r = ProcessRunner(str(path))
    yield r
    r.close()


def context(funcname: str) -> ProcessContext:
    return ProcessContext("ab" * 16, {"funcname": funcname})


def test_a_run_in_the_worker_sends_back_its_output_lines_and_attributes(
    runner: ProcessRunner,
) -> None:
    assert runner.names == ["add", "boom", "crash", "spin"]
    for _ in range(2):  # one worker serves one call after another
        ctx = context("add")
        run = runner.start(ctx, [1, 2], {})
        run.join(20)
        assert run.done and run.outcome == {"output": [3]}
        assert ctx.take(final=True) == (["adding 1 2", "from a thread", "logged"], [("k", "v")])
    failed = runner.start(context("boom"), [], {})
    failed.join(20)
    assert failed.outcome == {"error": "KeyError: 'x'"}
    assert runner.started == 1


def test_stopping_a_run_kills_the_function_and_the_next_run_gets_a_new_worker(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    run = runner.start(context("spin"), [str(pid_file)], {})
    wait_until("the function to start", lambda: pid_file.exists() and pid_file.read_text())
    worker = int(pid_file.read_text())
    run.join(0.2)
    assert not run.done and pid_alive(worker)
    assert runner.stop(run)
    assert not pid_alive(worker) and run.done
    again = runner.start(context("add"), [2, 2], {})
    again.join(20)
    assert again.outcome == {"output": [4]} and runner.started == 2


def test_a_worker_that_dies_fails_the_run_with_its_exit_code(runner: ProcessRunner) -> None:
    run = runner.start(context("crash"), [], {})
    run.join(20)
    assert run.outcome == {"error": "the worker process died (exit code 3)"}
    again = runner.start(context("add"), [1, 1], {})
    again.join(20)
    assert again.outcome == {"output": [2]} and runner.started == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = (", "syntax error"),
        ("raise RuntimeError('no GPU here')", "failed to load: RuntimeError: no GPU here"),
        ("import os\nos._exit(5)", "the worker process exited while loading it (exit code 5)"),
    ],
)
def test_a_functions_file_that_cannot_load_is_a_one_line_error(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.py"
    path.write_text(text)
    with pytest.raises(FunctionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ProcessRunner(str(path))


def test_the_worker_ends_with_its_executor_even_after_sigkill(tmp_path: Path) -> None:
    (tmp_path / "functions.py").write_text(FUNCTIONS)
    pid_file = tmp_path / "pid"
    script = (
        "import sys, threading\n"
        "from colonynode.sdk.context import ProcessContext\n"
        "from colonynode.sdk.runners import ProcessRunner\n"
        "r = ProcessRunner(sys.argv[1])\n"
        "r.start(ProcessContext('ab' * 16, {'funcname': 'spin'}), [sys.argv[2]], {})\n"
        "threading.Event().wait()  # the stand-in executor lives until the test kills it\n"
    )
    executor = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "functions.py"), str(pid_file)]
    )
    try:
        wait_until("the function to start", lambda: pid_file.exists() and pid_file.read_text())
        worker = int(pid_file.read_text())
        executor.send_signal(signal.SIGKILL)
        executor.wait(10)
        wait_until("the orphaned worker to exit", lambda: not pid_alive(worker))
    finally:
        executor.kill()
        executor.wait(10)


def test_in_process_runs_cannot_be_stopped_and_say_so() -> None:
    runner = ThreadRunner({"f": lambda: 1})
    run = runner.start(context("f"), [], {})
    run.join(5)
    assert run.outcome == {"output": [1]} and runner.stop(run) is False
