"""Gradient-inversion benchmark scripts (not tests): each writes benchmarks/results/<name>.md.

``dlg_cifar``, ``ig_cifar``, ``fedavg_inversion``, ``label_recovery``, ``ig_speed``;
run ``python -m fedarena.benchmarks.reproductions.inversion.<name> --help``.
"""
