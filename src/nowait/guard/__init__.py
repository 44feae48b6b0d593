"""The deadline guard: a batch must land before the work's real deadline.

`policy` (pure route and fallback decisions, `now` passed in), `forecast` (turnaround learned
from history), `latency` (cancel latency and call duration learned from history, planned at
p95), `plan` (one batch's full plan, for `nowait status`) and `turnaround` (the distribution
the prior, the emulator and the simulator share). May import the shared basics and
`nowait.sort`; never the store, the API or a terminal.
"""
