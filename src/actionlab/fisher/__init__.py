"""Fisher information of neural networks.

* :mod:`actionlab.fisher.meanfield` — mean-field order parameters and the predicted
  eigenvalue statistics m_λ, s_λ, λ_max, η_c of wide random MLPs (source 004).
* :mod:`actionlab.fisher.empirical` — measured FIM spectra through the dual matrix
  F* = BᵀB/T built layer by layer, Lanczos λ_max, Fisher–Rao norm (source 004).
* :mod:`actionlab.fisher.rfim` — closed-form relative Fisher information blocks (source 003).

Import the submodules directly (``from actionlab.fisher import meanfield``).
"""
