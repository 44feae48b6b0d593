"""Run the real `nowait` command line with a crash point installed:

    python tests/crash_runner.py POINT N run requests.jsonl --out ...

`nowait.cli.main` with `nowait.testing.crash_at(POINT, N)` as the route side's checkpoint: the
same commands, router and worker users run, killed with SIGKILL the N-th time it passes POINT.
"""

from __future__ import annotations

import sys
from typing import cast

from nowait.cli import main
from nowait.testing import CheckpointName, crash_at

if __name__ == "__main__":
    point, n, *argv = sys.argv[1:]
    main(argv, checkpoint=crash_at(cast(CheckpointName, point), int(n)))
