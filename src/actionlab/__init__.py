"""actionlab: exact numbers and reproducible experiments about neural classifiers.

Three questions, one package:

1. the action S(θ) of q = softmax(U·σ(W z + b) + c) and its Taylor expansion
   around θ = 0 (``actionlab.expansion``),
2. Fisher information spectra of wide random networks, mean-field theory
   against measurement (``actionlab.fisher``),
3. relative Fisher information and the RNGD optimizer
   (``actionlab.fisher.rfim``, ``actionlab.optim``).

The math modules are pure functions over tensors; experiments
(``actionlab.experiments``) write run folders; ``actionlab.cli`` is the
command line.
"""

__version__ = "0.1.0"

_ERRORS = ("ActionlabError", "DataError", "ShapeError", "ValueCheckError")


def __getattr__(name: str):
    # the error classes live in actionlab._checks, which imports torch: load it on first use, so that
    # `actionlab --help` (which imports this package) starts without torch
    if name in _ERRORS:
        from actionlab import _checks

        return getattr(_checks, name)
    raise AttributeError(f"module 'actionlab' has no attribute {name!r}")

__all__ = ["ActionlabError", "DataError", "ShapeError", "ValueCheckError", "__version__"]
