"""Everything that draws: terminal tables, progress, SVG charts and HTML reports.

May import the product areas below it (`analyze`, `simulate`, `route`, `guard`, `sort`) to read
their results; nothing below imports `present`, so library code never writes to a terminal.
"""
