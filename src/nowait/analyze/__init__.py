"""The sort side from logs: `nowait analyze` reads the logs and traces a team already has.

`readers/` (one per format: OTLP, LiteLLM, Langfuse, Admin API, nowait's own store), `detect`
(format by content), `engine` (DuckDB), `signals` (waiting evidence) and `report` (verdicts
and money). May import `sort`, `store` (to read nowait's own data) and the basics; never
`route`, `present` or `cli`.
"""
