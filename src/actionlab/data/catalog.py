"""What the data sets are: their names and aliases, class names, official files and checksums, mirrors.

Owns the constants every other part of :mod:`actionlab.data` reads; it reads no file itself.
"""

from __future__ import annotations

from actionlab._checks import ValueCheckError

__all__ = ["names", "canonical", "SPLITS", "STANDARDIZE", "REDUCTIONS", "MIRRORS", "IDX_FILES", "CIFAR_ARCHIVE",
           "CIFAR_DIR", "CIFAR_TRAIN", "CIFAR_TEST", "SUBDIRS", "DEFAULT_VALIDATION", "DIGITS_TEST_FRACTION"]

SPLITS = ("train", "validation", "test")
STANDARDIZE = ("none", "centre", "zscore")
REDUCTIONS = ("pca", "random", "pool")

_ALIASES = {
    "digits": "digits",
    "sklearn-digits": "digits",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "mnist": "mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}


def names() -> list[str]:
    """The data set names :func:`actionlab.data.load` knows (aliases such as ``fashion_mnist`` are accepted too)."""
    return ["digits", "fashion-mnist", "mnist", "cifar10"]


def canonical(name: str) -> str:
    """The canonical name of a data set or alias; an unknown name is an error listing the known ones."""
    if not isinstance(name, str):
        raise ValueCheckError(f"data set name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _ALIASES:
        raise ValueCheckError(f"unknown data set {name!r}; choose one of: {', '.join(names())}")
    return _ALIASES[key]


FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGIT_CLASSES = tuple(str(i) for i in range(10))

# (file name, md5, sha256): md5 from torchvision/datasets/mnist.py and cifar.py, sha256 from
# torchvision's prototype _CHECKSUMS table; both agree with ../shared/data/README.md.
IDX_FILES: dict[str, dict[str, tuple[str, str, str | None]]] = {
    "fashion-mnist": {
        "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                         "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
    "mnist": {
        "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
}
CIFAR_ARCHIVE = ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", None)
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)

#: base URLs tried in order (a file's URL is base + file name)
MIRRORS: dict[str, list[str]] = {
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
}

#: sub-folders of a root that may hold a data set (then the root itself)
SUBDIRS = {
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    "mnist": ("mnist", "MNIST/raw"),
    "cifar10": (CIFAR_DIR, f"cifar10/{CIFAR_DIR}", f"cifar-10/{CIFAR_DIR}"),
}

#: the default size of the validation split (a count, or a fraction of all samples for digits)
DEFAULT_VALIDATION = {"digits": 0.1, "fashion-mnist": 10000, "mnist": 10000, "cifar10": 5000}
DIGITS_TEST_FRACTION = 0.2
