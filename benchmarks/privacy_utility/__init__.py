"""Privacy–utility table of issue 5 (``python -m benchmarks.privacy_utility.table``)."""
