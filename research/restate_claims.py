"""The restated claims (emenet_tf.claims) on a study's stored claims.json, without training anything.

  python research/restate_claims.py research/results/study_default_k8/claims.json

A claims.json written before the claims were restated holds, per replicate, the paired differences
(NLL, ECE) and every generation step; the restated forms are computed from those same numbers: ECE
non-inferiority (the whole 95% interval below +ECE_MARGIN) and the generation claims on the mean step
(mean over steps per replicate, the whole interval below 0). Prints one line per claim.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emenet_tf.claims import ECE_MARGIN  # noqa: E402
from emenet_tf.study.statistics import summary  # noqa: E402


def restated(claim: dict) -> tuple[str, dict]:
    """(name, summary) of an old claim under its restated rule."""
    name = claim["name"]
    if name.startswith("student_ece_below_"):
        return name.replace("_below_", "_noninferior_"), summary(claim["values"], ECE_MARGIN, "below")
    if "steps" in claim:
        per_replicate = list(zip(*(s["values"] for s in claim["steps"]), strict=True))
        return name, summary([sum(v) / len(v) for v in per_replicate], 0.0, "below")
    return name, summary(claim["values"], claim["threshold"], claim["direction"])


def main(path: str) -> None:
    study = json.load(open(path))
    print(f"{path}: K = {study['replicates']}; restated claims (old verdict in brackets)")
    for claim in study["claims"]:
        name, row = restated(claim)
        lo, hi = row["ci95"]
        print(f"  {name:45s} {claim['task']:5s} mean {row['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}] "
              f"{'HOLDS' if row['holds'] else 'does not hold'} [{'held' if claim['holds'] else 'did not hold'}]")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
