"""Experiments: the runs behind the chapters' tables, and the benchmarks.

- ``distillation``: DeiT's comparison at course scale (teacher CNN and ViT students, over seeds);
- ``bench_model``, ``bench_train``: ``vitcourse bench model | train``; ``timing``: the timing
  helpers they are made of.
"""
