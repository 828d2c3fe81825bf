"""Fisher information of neural networks.

* :mod:`actionlab.fisher.meanfield` — mean-field theory of wide random MLPs (source 004):
  the :class:`~actionlab.fisher.meanfield.Architecture`, order parameters and the predicted
  eigenvalue statistics m_λ, s_λ, λ_max, η_c; the Gaussian integrals' closed forms come from
  the activation objects (:mod:`actionlab.activations`), quadrature otherwise.
* :mod:`actionlab.fisher.empirical` — measured FIM spectra through the dual matrix
  F* = BᵀB/T built layer by layer (any other ``nn.Module``: the per-sample Jacobian Gram
  matrix), per-layer terms F*_l of A.19, a memory guard, Lanczos λ_max, Fisher–Rao norm (source 004).
* :mod:`actionlab.fisher.operators`, :mod:`actionlab.fisher.spectral`, :mod:`actionlab.fisher.ntk` —
  curvature operators (dual, matrix-free, RFIM blocks, curvlinops), their spectra (exact / SLQ
  density, Hutchinson traces) and the empirical NTK of any module.
* :mod:`actionlab.fisher.rfim` — closed-form relative Fisher information blocks of layers
  (source 003), from the activations' single-unit coefficients.

Import the submodules directly (``from actionlab.fisher import meanfield``).
"""
