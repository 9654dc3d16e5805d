"""Privacy–utility table of issue 5 (``python -m fedarena.benchmarks.reproductions.privacy_utility.table``)."""
