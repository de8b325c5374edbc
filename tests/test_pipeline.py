"""The default data path against the book's (a Gluon DataLoader with per-sample transforms):

- `to_tensor` is `ToTensor` bit for bit, resized batches are Resize then ToTensor;
- on the real data both deliver the same examples and images, and the same accuracy.
"""
from __future__ import annotations

import numpy as np
import pytest
from mxnet import gluon, nd

from dropout_gluon import ScratchNet, data, evaluate_accuracy, get_net, set_seed

transforms = gluon.data.vision.transforms


def epoch_arrays(data_iter) -> tuple:
    """All of one pass's X (float32, (N, 1, 28, 28)) and y (int32), in the order delivered."""
    xs, ys = zip(*[(X.asnumpy(), y.asnumpy()) for X, y in data_iter])
    return np.concatenate(xs), np.concatenate(ys)


def as_multiset(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The (image, label) pairs as byte rows in sorted order: equal results mean equal multisets."""
    rows = np.concatenate([X.reshape(len(X), -1).view(np.uint8), y.astype(">i4").view(np.uint8).reshape(-1, 4)],
                          axis=1)
    rows = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).ravel()
    return np.sort(rows)


def test_to_tensor_is_totensor_bit_for_bit():
    """The one-time conversion equals Gluon's ToTensor on every pixel value, shape and dtype included."""
    images = (np.arange(20 * 28 * 28) % 256).astype(np.uint8).reshape(20, 28, 28)  # every byte value
    expected = nd.image.to_tensor(nd.array(images[..., None], dtype="uint8")).asnumpy()
    got = data.to_tensor(images, chunk=7).asnumpy()  # a chunk that does not divide N
    assert got.dtype == np.float32 and got.shape == (len(images), 1, 28, 28)
    np.testing.assert_array_equal(got, expected)


def test_resized_batches_are_resize_then_totensor():
    """With resize the default path keeps the book's order of transforms: Resize on uint8, then ToTensor."""
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), np.arange(10)
    X, y = next(iter(data.DataIter(images, labels, 10, shuffle=False, resize=32)))
    book = transforms.Compose([transforms.Resize(32), transforms.ToTensor()])
    expected = np.stack([book(nd.array(img[:, :, None], dtype="uint8")).asnumpy() for img in images])
    np.testing.assert_array_equal(X.asnumpy(), expected)
    assert y.dtype == np.int32


@pytest.mark.realdata
def test_default_and_book_pipelines_deliver_the_same_examples(real_data):
    """Per epoch, the same multiset of (X, y) for training and the same sequence for testing; X as ToTensor's."""
    default = data.load_data_fashion_mnist(256)
    book = data.load_data_fashion_mnist(256, loader="gluon")
    for default_iter, book_iter, shuffled in ((default[0], book[0], True), (default[1], book[1], False)):
        X, y = epoch_arrays(default_iter)
        X_book, y_book = epoch_arrays(book_iter)
        assert X.dtype == X_book.dtype == np.float32 and y.dtype == y_book.dtype == np.int32
        assert X.shape == X_book.shape and X.shape[1:] == (1, 28, 28)
        if shuffled:
            np.testing.assert_array_equal(as_multiset(X, y), as_multiset(X_book, y_book))
        else:
            np.testing.assert_array_equal(X, X_book)
            np.testing.assert_array_equal(y, y_book)
    # And every test image is exactly what ToTensor makes of the verified file.
    test_images, test_labels = real_data[2], real_data[3]
    X, y = epoch_arrays(default[1])
    np.testing.assert_array_equal(X, nd.image.to_tensor(nd.array(test_images[..., None], dtype="uint8")).asnumpy())
    np.testing.assert_array_equal(y, test_labels)


@pytest.mark.realdata
def test_default_and_book_pipelines_give_the_same_accuracy(real_data):
    """evaluate_accuracy of a fixed net is the same number through either pipeline."""
    set_seed(0)
    nets = [ScratchNet(), get_net()]
    (train_iter, test_iter), (book_train, book_test) = (data.load_data_fashion_mnist(256),
                                                        data.load_data_fashion_mnist(256, loader="gluon"))
    for net in nets:
        # The test sets come in the same batches: the same logits, bit for bit, so exactly the same number.
        assert evaluate_accuracy(test_iter, net) == evaluate_accuracy(book_test, net)
        # The training sets are shuffled differently, so an image meets other batch mates: BLAS may round its
        # logits differently in the last bit, which could flip an exact tie. Allow one such image.
        assert abs(evaluate_accuracy(train_iter, net) - evaluate_accuracy(book_train, net)) <= 1 / 60000
