"""What the data sets are: their names and aliases, class names, official files and checksums, mirrors.

Owns the constants every other part of :mod:`actionlab.data` reads; it reads no file itself.
"""

from __future__ import annotations

from actionlab._checks import ValueCheckError

__all__ = ["names", "canonical", "SPLITS", "STANDARDIZE", "REDUCTIONS", "MIRRORS", "IDX_FILES", "CIFAR_ARCHIVE",
           "CIFAR_DIR", "CIFAR_TRAIN", "CIFAR_TEST", "CIFAR_MD5", "IDX_CONTENT_SHA256", "SUBDIRS",
           "DEFAULT_VALIDATION", "DIGITS_TEST_FRACTION"]

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
#: sha256 of each IDX file's decompressed bytes (the same file stored uncompressed, or re-compressed), computed
#: from the files of ../shared/data, which match the official md5 / sha256 above (its README, four checks)
IDX_CONTENT_SHA256: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    "mnist": {
        "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
}
CIFAR_ARCHIVE = ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", None)
#: md5 of the extracted CIFAR-10 files (torchvision/datasets/cifar.py: train_list, test_list, meta)
CIFAR_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
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

#: the default size of the validation split, held out of the official train file (digits: a fraction of all
#: 1797 samples); "train" is the rest, so train, validation and test are disjoint by default
DEFAULT_VALIDATION = {"digits": 0.1, "fashion-mnist": 10000, "mnist": 10000, "cifar10": 5000}
DIGITS_TEST_FRACTION = 0.2
