"""What a command shows on stderr when stderr is a terminal (a pseudo-terminal) or a pipe."""

from __future__ import annotations

import os
import pty
import subprocess


def stderr_shown(command: list[str], on_terminal: bool, timeout: float = 120) -> str:
    """Run `command` (it must exit 0) with stderr on a pseudo-terminal or a pipe; its stderr."""
    if not on_terminal:
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=timeout)
        return done.stderr
    leader, follower = pty.openpty()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=follower) as child:
        os.close(follower)
        shown = b""
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            shown += data
        assert child.wait(timeout=timeout) == 0
    os.close(leader)
    return shown.decode(errors="replace")
