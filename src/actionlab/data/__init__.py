"""Data sets as ``Dataset(z, labels)``: the one data pipeline of actionlab.

One call, :func:`load`, gives the embedding vectors ``z`` (N × E float tensor,
pixels scaled to [0, 1]) and the labels ``m`` (N long tensor) of

=================  ==========================================  ============  ======
name               source                                      files' N      E
                                                               train/test
=================  ==========================================  ============  ======
``digits``         scikit-learn's bundled 8×8 digits (offline)  1797 in all   64
``fashion-mnist``  IDX gzip files (Zalando), 28×28 grey         60000/10000   784
``mnist``          IDX gzip files (LeCun et al.), 28×28 grey    60000/10000   784
``cifar10``        official python batches, 32×32×3 colour      50000/10000   3072
=================  ==========================================  ============  ======

prepared as a :class:`LoadSpec` says (``load(name, split, spec)``, or the
spec's fields as keywords: ``load("mnist", "train", validation=5000)``).

Train, validation and test are pairwise disjoint for every data set, with one
rule (:mod:`~actionlab.data.splits`): "test" is the official test file
(digits: a stratified 20 %), "validation" a stratified hold-out from the seed
of the rest (default 10,000 MNIST / Fashion-MNIST, 5,000 CIFAR-10, 10 %
digits), "train" what remains — ``load("mnist", "train")`` is 50,000 images;
``validation=0`` gives all 60,000 and no validation split.  Every file is
checked once against its official digest (:mod:`~actionlab.data.verify`).

The package, one idea a module:

* :mod:`~actionlab.data.catalog` — names, aliases, class names, official files, checksums, mirrors;
* :mod:`~actionlab.data.readers` — IDX and CIFAR-10 readers (every file problem is a ``DataError``);
* :mod:`~actionlab.data.sources` — where the files are found (``root``, ``$ACTIONLAB_DATA``,
  ``../shared/data``, the download cache);
* :mod:`~actionlab.data.verify` — every file checked once against its known digest, the result cached;
* :mod:`~actionlab.data.download` — fetching from the mirrors with checksums;
* :mod:`~actionlab.data.splits` — the stratified train / validation / test rule and class subsampling;
* :mod:`~actionlab.data.transforms` — the one PCA, random projection, pooling and standardisation;
* :mod:`~actionlab.data.dataset` — ``Dataset`` and the class balance p(m) (000, after eq. (3));
* :mod:`~actionlab.data.loading` — :class:`LoadSpec` and :func:`load`.

Memory: a file is decompressed once into a uint8 array (kept in a small
in-process cache, :func:`clear_cache`), and only the selected rows are
converted to the requested float dtype (float32 by default) — a
60000 × 784 float64 copy is never made unless you ask for ``dtype=float64``.
"""

from actionlab.data.catalog import MIRRORS, REDUCTIONS, SPLITS, STANDARDIZE, names
from actionlab.data.dataset import BalanceReport, Dataset, balance_report, check_balanced
from actionlab.data.loading import LoadSpec, load
from actionlab.data import readers as _readers
from actionlab.data import verify as _verify
from actionlab.data.sources import DataLookupWarning, data_roots
from actionlab.data.splits import label_array
from actionlab.data.transforms import ZERO_STD


def clear_cache() -> None:
    """Forget the decompressed files kept in memory and this process's record of verified files."""
    _readers.clear_cache()
    _verify.clear_memo()

__all__ = [
    "Dataset",
    "BalanceReport",
    "LoadSpec",
    "load",
    "names",
    "balance_report",
    "check_balanced",
    "clear_cache",
    "data_roots",
    "DataLookupWarning",
    "label_array",
    "SPLITS",
    "STANDARDIZE",
    "REDUCTIONS",
    "ZERO_STD",
    "MIRRORS",
]
