"""Trace-driven simulation of the routing policies on a virtual clock (`nowait simulate`).

`trace` (reading and generating traces) and `engine` (a world that differs from the plan, five
policies and the oracle). May import `guard`, `sort` and the basics; never `route`, `present`
or `cli`.
"""
