"""The sort side: which workloads may wait, and what moving them saves.

`classify` (the pure verdict rules), `worksheet` (hand-described workloads in TOML) and
`pricing` (the dated price table and exact money). May import only the shared basics
(`nowait.types`, `nowait.errors`, `nowait.durations`, `nowait.limits`); no I/O in `classify`.
"""
