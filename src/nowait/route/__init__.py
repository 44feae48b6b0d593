"""The route side: awaited work to the real-time API, the rest to the batch API.

`router` (the `Router` facade and result sinks), `worker` (one pass of submit, poll, collect,
retry, fall back), `backend` (the `Backend` seam: the only module that imports `anthropic`),
`packing`, `receipts` and `requests_file`. May import `guard`, `sort`, `store` and the basics;
never `analyze`, `simulate`, `present` or `cli`.
"""
