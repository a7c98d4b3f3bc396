"""The methods the evaluation compares, one module each behind one interface.

Predictive methods (``generations``, ``dirichlet``, ``mc_dropout``) have
``predict(ctx: Context) -> list[Predictions]``; post-hoc ``temperature_scaling`` derives its row
from generation 0's single model with ``fit(...)``. ``common`` holds what they share.
"""
