"""Robustness benchmarks (issue 4): ``bench_aggregators`` (speed), ``bench_mud_hog_mnist``
(MUD-HoG's hardest mix), ``bench_alie_ipm`` (ALIE and IPM against every aggregator); issue 13:
``bench_monna`` (client momentum 0.99 vs 0 under four attacks, NNA / trimmed mean / geometric
median), ``bench_mud_hog_peacetime`` (MUD-HoG's honest exclusions with nobody attacking, with and
without its gap test), ``bench_mud_hog_unreliable`` (its unreliable step round by round).

They build their federations with the harness's ``fedarena.benchmarks.harness.tasks.federation``
(roles, adversaries, unreliable clients) and score with ``fedarena.benchmarks.metrics.robustness``.
"""
