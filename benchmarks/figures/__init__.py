"""Figures: ``plots`` (reconstruction grids and loss curves, written to files by the tasks
and the reproduction scripts) and ``report`` (the report's charts as PNG bytes)."""
