"""The replicate study: K independent runs and the claims (``emenet_tf.claims``) with 95% intervals.

  python -m emenet_tf.study [--replicates K] --seed S --workdir DIR [any train.py flag]

runner.py      the replicates: their configs and seeds, running and resuming them, their time
analysis.py    metrics.json of every replicate -> claims.json (intervals, strict forms, Bayes ratios)
statistics.py  the t-interval and the threshold test
render.py      claims.md and claims.png
The command line is ``emenet_tf/cli/study.py``.
"""
