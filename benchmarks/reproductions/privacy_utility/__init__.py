"""Privacy–utility table of issue 5 (``python -m benchmarks.reproductions.privacy_utility.table``)."""
