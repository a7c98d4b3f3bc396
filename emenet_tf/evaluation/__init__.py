"""Evaluation of a finished run against the baselines, on the validation split.

evaluate.py   ``evaluate_run``: the methods, the fit / evaluation halves, the rows of metrics.json
inputs.py     finished generations, the validation split, the OOD images, the synthetic truth
methods/      the compared methods, one module each (generations, dirichlet, mc_dropout,
              temperature_scaling) behind one interface (``methods.common``)
scoring.py    one method's figures: recognition, uncertainty, OOD, truth and annotator-vote KL
writing.py    metrics.json and the other files; the evaluation folder's rule
"""


def __getattr__(name):
    """``evaluation.evaluate_run``, imported on first use (it loads TensorFlow; ``methods.common``
    and ``scoring`` do not)."""
    if name == "evaluate_run":
        from emenet_tf.evaluation.evaluate import evaluate_run

        return evaluate_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
