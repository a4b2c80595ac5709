"""Task output is streamed live with a [run/step/task] prefix, and breakpoint() works inline."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

FLOW = """
import sys, time
from matinee import FlowSpec, step

class Talky(FlowSpec):
    @step
    def start(self):
        print("first line", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        time.sleep(3)
        print("second line")
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Talky()
"""


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_output_arrives_while_the_task_runs(write_flow, tmp_path, executor):
    path = write_flow(FLOW)
    proc = subprocess.Popen(
        [sys.executable, str(path), "run", "--executor", executor],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ,
    )
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "first line" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert line.strip() == "[1/start/1] first line"
        assert proc.poll() is None, "the line should arrive before the task ends"
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "[1/start/1] second line" in out
    assert "[1/start/1] to stderr" in err
    from matinee import Run

    task = Run("Talky/1")["start"].task
    assert task.stdout == "first line\nsecond line\n"
    assert task.stderr == "to stderr\n"


def test_breakpoint_opens_the_debugger_inline(write_flow, tmp_path):
    path = write_flow(
        """
        from matinee import FlowSpec, step

        class Debuggable(FlowSpec):
            @step
            def start(self):
                self.secret = 41 + 1
                breakpoint()
                self.next(self.end)

            @step
            def end(self):
                print("finished")

        if __name__ == "__main__":
            Debuggable()
        """
    )
    result = subprocess.run(
        [sys.executable, str(path), "run", "--executor", "inline"],
        input="p self.secret * 10\ncontinue\n", capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONBREAKPOINT": "pdb.set_trace"}, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "(Pdb)" in result.stdout
    assert "420" in result.stdout
    assert "finished" in result.stdout
