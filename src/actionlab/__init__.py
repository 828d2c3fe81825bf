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

from actionlab._checks import ActionlabError, DataError, ShapeError, ValueCheckError

__version__ = "0.1.0"

__all__ = ["ActionlabError", "DataError", "ShapeError", "ValueCheckError", "__version__"]
