"""Robustness benchmarks (issue 4): ``bench_aggregators`` (speed), ``bench_mud_hog_mnist``
(MUD-HoG's hardest mix), ``bench_alie_ipm`` (ALIE and IPM against every aggregator).

They build their federations with the harness's ``fedarena.benchmarks.harness.tasks.federation``
(roles, adversaries, unreliable clients) and score with ``fedarena.benchmarks.metrics.robustness``.
"""
