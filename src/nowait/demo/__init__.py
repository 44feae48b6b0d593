"""`nowait demo`'s parts: the route story on the embedded emulator and a generated month of logs.

Sits just under the CLI: it may import every product area, `present` included.
"""
