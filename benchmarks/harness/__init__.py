"""The benchmark harness: suites (YAML) → runs → SQLite store → reports."""
