"""Figures: ``plots`` (reconstruction grids and loss curves, written to files by the tasks
and the reproduction scripts), ``report`` (the report's charts as PNG, PDF or SVG bytes),
``style`` (what they share: ``save_figure``, integer round ticks, outside legends, n/a bars,
the ``layout_problems`` overlap check), ``rebuild`` (``fedarena figure``: grids from stored
runs) and ``screenshot_check`` (report.html in headless Chromium)."""
