"""tests.processes' stderr readers: no line is lost between wait_for_line() and the rest."""

import subprocess
import sys

import pytest

from tests.processes import rest_of_stderr, wait_for_line

# Two lines in one write, then more after a pause: the first read takes both into the text layer.
WRITER = (
    "import sys, time; sys.stderr.write('ready\\nafter ready\\n'); sys.stderr.flush();"
    " time.sleep(0.2); sys.stderr.write('last\\n')"
)


def test_the_lines_after_the_awaited_one_are_all_in_the_rest():
    process = subprocess.Popen([sys.executable, "-c", WRITER], stderr=subprocess.PIPE, text=True)
    assert wait_for_line(process, "ready", timeout=10) == ["ready\n"]
    assert rest_of_stderr(process, timeout=10) == "after ready\nlast\n"
    assert process.returncode == 0


def test_a_process_that_ends_without_the_line_fails_the_wait_at_once():
    process = subprocess.Popen([sys.executable, "-c", WRITER], stderr=subprocess.PIPE, text=True)
    with pytest.raises(AssertionError, match="ended without a line with 'never said'"):
        wait_for_line(process, "never said", timeout=10)
    process.wait(timeout=10)
