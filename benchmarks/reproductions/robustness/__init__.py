"""Robustness benchmarks (issue 4) and the helpers the harness reuses.

``federation``: build a poisoned federation (roles, adversaries, unreliable clients) and
run it. ``metrics``: detection precision/recall per role, attack success rate. Scripts:
``bench_aggregators`` (speed), ``bench_mud_hog_mnist`` (MUD-HoG's hardest mix),
``bench_alie_ipm`` (ALIE and IPM against every aggregator).
"""
