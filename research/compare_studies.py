"""Paired comparison of two replicate studies run with the same --seed (so replicate r of both has
the same synthetic data: --synthetic_seed S + r), e.g. a temporal study against the default one:

  python -m emenet_tf.study --replicates 5 --seed 0 --workdir runs/study            # per-frame
  python -m emenet_tf.study --replicates 5 --seed 0 --workdir runs/study_t8 --temporal 8
  python research/compare_studies.py runs/study runs/study_t8 [--method gen2_single]

Prints, for the replicates both studies finished, OTHER - BASE of one method's row (default: the
last generation's single student) per metric, with its mean and 95% t-interval over replicates
(``emenet_tf.study.statistics.t_interval``), and whether the interval lies on the better side of zero.
Refuses replicates whose data differ (their replicate.json synthetic seeds).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emenet_tf.claims import metric_value  # noqa: E402
from emenet_tf.config import TrainConfig, flat  # noqa: E402
from emenet_tf.evaluation.methods.common import generation_method  # noqa: E402
from emenet_tf.io import read_json  # noqa: E402
from emenet_tf.retired import upgrade  # noqa: E402
from emenet_tf.rundir import RunDir  # noqa: E402
from emenet_tf.study.runner import PER_INVOCATION, REPLICATE  # noqa: E402
from emenet_tf.study.statistics import t_interval  # noqa: E402

# (task, metric, higher is better)
METRICS = (
    ("expr", "score", True),
    ("va", "ccc_valence", True),
    ("va", "ccc_arousal", True),
    ("au", "score", True),
    ("expr", "nll", False),
    ("expr", "ece", False),
    ("va", "nll", False),
    ("au", "nll", False),
    ("expr", "kl_true", False),
)


def finished(study_dir: str) -> dict:
    """{replicate number: (synthetic seed, metrics dict)} of the study's finished replicates."""
    out = {}
    for name in sorted(os.listdir(study_dir)):
        folder = RunDir(os.path.join(study_dir, name))
        if (
            name.startswith("rep")
            and os.path.exists(folder.path(REPLICATE))
            and os.path.exists(folder.metrics_path)
        ):
            out[int(name[3:])] = (
                read_json(folder.path(REPLICATE))["synthetic_seed"],
                read_json(folder.metrics_path),
            )
    return out


def settings_that_differ(base_dir: str, other_dir: str, replicate: int) -> str:
    """'name: base -> other' of every config field the two studies' replicate sets differently
    (a synthetic_* field among them means the same identities and labels under other images)."""
    defaults = flat(TrainConfig().to_dict())  # a field an older run's config.json lacks had its default
    base, other = (
        {**defaults, **flat(upgrade(read_json(RunDir(os.path.join(d, f"rep{replicate}")).config_path), d))}
        for d in (base_dir, other_dir)
    )
    names = sorted((set(base) | set(other)) - set(PER_INVOCATION))
    return "; ".join(f"{n}: {base.get(n)} -> {other.get(n)}" for n in names if base.get(n) != other.get(n))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("other")
    parser.add_argument("--method", default=None, help="row of metrics.json (default: gen<G-1>_single)")
    args = parser.parse_args(argv)
    base, other = finished(args.base), finished(args.other)
    common = sorted(set(base) & set(other))
    if not common:
        parser.error("the two studies have no finished replicate in common")
    for r in common:
        if base[r][0] != other[r][0]:
            parser.error(f"rep{r}: synthetic seeds differ ({base[r][0]} vs {other[r][0]}): not paired")
    generations = RunDir(os.path.join(args.base, f"rep{common[0]}")).load_config().generations
    method = args.method or generation_method(generations - 1, "single")
    print(f"{args.other} - {args.base}, {method}, replicates {common} (paired by data)")
    print(f"settings that differ: {settings_that_differ(args.base, args.other, common[0]) or 'none'}")
    print(f"{'task':5s} {'metric':12s} {'base':>8s} {'other':>8s} {'diff':>8s} {'95% CI':>20s}  better")
    for task, metric, higher in METRICS:
        pairs = [
            (metric_value(base[r][1], method, task, metric), metric_value(other[r][1], method, task, metric))
            for r in common
        ]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if not pairs:
            continue
        mean, lo, hi = t_interval([b - a for a, b in pairs])
        ci = "undefined (K=1)" if lo is None else f"[{lo:+.4f}, {hi:+.4f}]"
        better = lo is not None and ((lo > 0) if higher else (hi < 0))
        base_mean = sum(a for a, _ in pairs) / len(pairs)
        other_mean = sum(b for _, b in pairs) / len(pairs)
        print(f"{task:5s} {metric:12s} {base_mean:8.4f} {other_mean:8.4f} {mean:+8.4f} {ci:>20s}  "
              f"{'yes' if better else 'no'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
