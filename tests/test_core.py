"""The chapter's building blocks against their definitions:

- `dropout`: values zero or scaled by 1/(1-p), the kept fraction within binomial bounds, the mean kept
  (within its standard error), zero gradients exactly where dropped, p = 0 and p = 1, bad p;
- predict mode: deterministic, no dropout; the scratch net and the Gluon net compute the same function
  and take the same first training steps from the same weights;
- the trainer's numbers against a direct evaluation; divergence; seeding; another context for
  everything; the fused update against the book's `sgd` floats; numpy numbers; bad hyperparameters fail
  before any work; configurations reject unknown keys (with a hint) and wrong types, and hold a data folder
  as an absolute path.
"""
from __future__ import annotations

import math
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from mxnet.gluon import loss as gloss

from dropout_gluon import ScratchNet, dropout, get_net, set_seed, sgd, train_ch3, train_gluon, train_scratch
from dropout_gluon.data import DataIter
from dropout_gluon.trainer import TrainingDiverged, sgd_fused
from dropout_gluon.trainer import evaluate_accuracy as gb_evaluate

Z = 5.0  # two-sided tail of N(0, 1) beyond 5 sigma: ~6e-7, so these bounds fail only when the code is wrong


@pytest.fixture(autouse=True)
def _seed():
    set_seed(0)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_values_are_zero_or_scaled(p):
    X = nd.arange(1, 10001).reshape((100, 100))
    out = dropout(X, p).asnumpy()
    scaled = (X / (1 - p)).asnumpy()
    assert np.all((out == 0) | (out == scaled))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_kept_fraction_is_binomial(p):
    n = 200_000
    kept = int((dropout(nd.ones(n), p) != 0).sum().asscalar())
    mean, sd = n * (1 - p), math.sqrt(n * p * (1 - p))  # kept ~ Binomial(n, 1 - p)
    assert abs(kept - mean) <= Z * sd


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_mean_is_preserved(p):
    # E[h'] = h: each column is one unit h_j seen through N independent masks.
    h = np.linspace(0.5, 5.0, 10).astype(np.float32)
    N = 20_000
    out = dropout(nd.array(np.tile(h, (N, 1))), p).asnumpy()
    se = h * math.sqrt(p / (1 - p) / N)  # Var[h'] = h^2 p / (1 - p)
    assert np.all(np.abs(out.mean(axis=0) - h) <= Z * se)


def test_p0_is_identity_and_p1_is_zeros():
    X = nd.arange(16).reshape((2, 8))
    np.testing.assert_array_equal(dropout(X, 0).asnumpy(), X.asnumpy())
    out = dropout(X, 1)
    assert out.shape == X.shape and not out.asnumpy().any()


def test_gradient_is_zero_exactly_where_dropped():
    X = nd.random.uniform(1, 2, shape=(50, 40))
    X.attach_grad()
    with autograd.record():
        Y = dropout(X, 0.5)
    Y.backward()
    dropped = Y.asnumpy() == 0
    assert 0 < dropped.mean() < 1
    grad = X.grad.asnumpy()
    assert np.all(grad[dropped] == 0) and np.all(grad[~dropped] == 2)


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan"), float("inf"), "0.5", None, True])
def test_bad_probability_raises(bad):
    with pytest.raises(ValueError, match=r"drop_prob must be a probability in \[0, 1\], got " + repr(bad)[:3]):
        dropout(nd.ones(3), bad)


@pytest.mark.parametrize("bad", [1, 1.0, -0.1, float("nan")])
def test_gluon_net_rejects_what_mxnet_would_accept(bad):
    with pytest.raises(ValueError, match="drop_prob2 must be"):
        get_net(0.2, bad)


@pytest.mark.parametrize("make_net", [ScratchNet, get_net])
def test_dropout_only_while_training(make_net):
    net, X = make_net(0.2, 0.5), nd.random.uniform(shape=(8, 1, 28, 28))
    np.testing.assert_array_equal(net(X).asnumpy(), net(X).asnumpy())  # predict mode: deterministic
    with autograd.record():
        a, b = net(X), net(X)
    assert not np.array_equal(a.asnumpy(), b.asnumpy())  # training mode: a new mask per call


def _twin_nets():
    """A scratch net and a Gluon net with no dropout and the same initial weights."""
    scratch = ScratchNet(0, 0)
    net = get_net(0, 0)
    net(nd.zeros((1, 784)))  # finish Gluon's deferred initialisation
    dense = [block for block in net if isinstance(block, gluon.nn.Dense)]
    for layer, W, b in zip(dense, scratch.params[0::2], scratch.params[1::2]):
        layer.weight.set_data(W.T)  # Gluon stores (out, in)
        layer.bias.set_data(b)
    return scratch, net, dense


def test_scratch_and_gluon_nets_agree():
    scratch, net, dense = _twin_nets()
    W1_before = scratch.params[0].copy()
    X = nd.random.uniform(shape=(32, 1, 28, 28))
    y = nd.array(np.arange(32) % 10, dtype="int32")
    np.testing.assert_allclose(scratch(X).asnumpy(), net(X).asnumpy(), rtol=1e-5, atol=1e-6)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
    loss = gloss.SoftmaxCrossEntropyLoss()
    for _ in range(3):  # the same first training steps: sgd on the sum of losses, / batch_size
        for model, step in ((scratch, lambda: sgd(scratch.params, 0.5, 32)), (net, lambda: trainer.step(32))):
            with autograd.record():
                l = loss(model(X), y).sum()
            l.backward()
            step()
    for layer, W, b in zip(dense, scratch.params[0::2], scratch.params[1::2]):
        np.testing.assert_allclose(layer.weight.data().T.asnumpy(), W.asnumpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layer.bias.data().asnumpy(), b.asnumpy(), rtol=1e-4, atol=1e-6)
    assert not np.allclose(scratch.params[0].asnumpy(), W1_before.asnumpy())  # the steps did move them


def _tiny_iters(n=64, batch_size=16):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)
    return DataIter(images, labels, batch_size, shuffle=True), DataIter(images, labels, batch_size, shuffle=False)


def test_train_ch3_reports_the_books_numbers():
    # With lr 0 nothing moves, so the epoch's loss and accuracy must equal a direct evaluation.
    train_iter, test_iter = _tiny_iters()
    net = ScratchNet(0, 0)
    lines = []
    history = train_ch3(net, train_iter, test_iter, gloss.SoftmaxCrossEntropyLoss(), 2, 16,
                        net.params, 0.0, log=lines.append)
    X = nd.concat(*[X for X, _ in test_iter], dim=0)
    y = nd.concat(*[y for _, y in test_iter], dim=0)
    y_hat = net(X)
    expected_loss = gloss.SoftmaxCrossEntropyLoss()(y_hat, y).mean().asscalar()
    expected_acc = (y_hat.argmax(axis=1) == y.astype("float32")).mean().asscalar()
    assert [e.epoch for e in history] == [1, 2]
    for e in history:
        assert e.loss == pytest.approx(expected_loss, rel=1e-6)
        assert e.train_acc == pytest.approx(expected_acc) and e.test_acc == pytest.approx(expected_acc)
        assert e.seconds > 0
    assert lines == [f"epoch {e.epoch}, loss {e.loss:.4f}, train acc {e.train_acc:.3f}, "
                     f"test acc {e.test_acc:.3f}" for e in history]


def test_divergence_raises_with_history():
    train_iter, test_iter = _tiny_iters()
    net = ScratchNet(0, 0)
    with pytest.raises(TrainingDiverged, match="diverged in epoch .*smaller learning rate") as e:
        train_ch3(net, train_iter, test_iter, gloss.SoftmaxCrossEntropyLoss(), 20, 16, net.params, 1e30,
                  log=None)
    assert len(e.value.history) == e.value.epoch - 1


def test_divergence_with_a_trainer_that_only_steps():
    # train_ch3 takes any object with `step`: on divergence it must not ask it for a learning rate it lacks.
    train_iter, test_iter = _tiny_iters()
    net = ScratchNet(0, 0)

    class Stepper:
        def step(self, batch_size):
            sgd_fused(net.params, 1e30, batch_size)

    with pytest.raises(TrainingDiverged, match="smaller learning rate$"):
        train_ch3(net, train_iter, test_iter, gloss.SoftmaxCrossEntropyLoss(), 20, 16, trainer=Stepper(), log=None)


def test_train_functions_use_data_iters_and_seed():
    iters = _tiny_iters()
    _, a = train_scratch(2, data_iters=iters, seed=3, log=None)
    _, b = train_scratch(2, data_iters=iters, seed=3, log=None)
    _, c = train_scratch(2, data_iters=iters, seed=4, log=None)
    strip = lambda h: [e[:4] for e in h]  # noqa: E731 - all but the seconds
    assert strip(a) == strip(b) and strip(a) != strip(c)
    _, g1 = train_gluon(2, data_iters=iters, seed=3, log=None)
    _, g2 = train_gluon(2, data_iters=iters, seed=3, log=None)
    assert strip(g1) == strip(g2)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_epochs": 0}, "num_epochs must be a whole number >= 1, got 0"),
    ({"batch_size": -1}, "batch_size must be a whole number >= 1, got -1"),
    ({"lr": 0}, "lr must be a finite number > 0, got 0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ({"drop_prob1": 1.5}, r"drop_prob1 must be a probability in \[0, 1\], got 1.5"),
])
def test_bad_hyperparameters_fail_before_any_work(isolated_dirs, kwargs, message):
    # isolated_dirs: no data anywhere, so reaching the data would raise DataError instead.
    for train in (train_scratch, train_gluon):
        with pytest.raises(ValueError, match=message):
            train(**kwargs, log=None)


def test_mx_seed_controls_init():
    set_seed(1)
    a = ScratchNet().params[0].asnumpy()
    set_seed(1)
    assert np.array_equal(a, ScratchNet().params[0].asnumpy())
    mx.random.seed(2)
    assert not np.array_equal(a, ScratchNet().params[0].asnumpy())


def test_another_context_gets_everything():
    # cpu(1) stands in for a GPU, which this machine does not have: every parameter and batch must end up
    # there. (MXNet lets cpu(0) and cpu(1) arrays mix, so this checks placement, not that a GPU run works.)
    iters = _tiny_iters()
    strip = lambda h: [e[:4] for e in h]  # noqa: E731
    for train in (train_scratch, train_gluon):
        net, moved = train(1, data_iters=iters, seed=5, log=None, ctx=mx.cpu(1))
        _, here = train(1, data_iters=iters, seed=5, log=None)
        assert strip(moved) == strip(here)
        params = net.params if isinstance(net, ScratchNet) else [p.data() for p in net.collect_params().values()]
        assert {p.context for p in params} == {mx.cpu(1)}


def test_fused_sgd_gives_the_books_floats():
    # The default path's one-operator update against the book's line, at the chapter's batch size.
    params = [nd.random.normal(shape=(784, 256)), nd.random.normal(shape=(256,))]
    for param in params:
        param.attach_grad()
        param.grad[:] = nd.random.normal(shape=param.shape)
    books = [param.copy() for param in params]
    for book, param in zip(books, params):
        book.attach_grad()
        book.grad[:] = param.grad
    before = [param.asnumpy() for param in params]
    sgd(books, 0.5, 256)
    sgd_fused(params, 0.5, 256)
    for param, book, old in zip(params, books, before):
        assert not np.array_equal(param.asnumpy(), old)  # an update happened
        np.testing.assert_array_equal(param.asnumpy(), book.asnumpy())


def test_numpy_numbers_are_accepted_everywhere():
    # A configuration from numpy values (e.g. a sweep over np.arange) is the same run as from Python's.
    iters = _tiny_iters()
    _, a = train_scratch(np.int64(1), np.float32(0.5), np.int64(16), np.float64(0.2), seed=np.uint32(3),
                         data_iters=iters, log=None)
    _, b = train_scratch(1, 0.5, 16, 0.2, seed=3, data_iters=iters, log=None)
    assert [e[:4] for e in a] == [e[:4] for e in b]


def test_empty_data_is_a_clear_error():
    net = ScratchNet()
    with pytest.raises(ValueError, match="yielded no examples"):
        gb_evaluate([], net)


def test_bad_seed_fails_before_any_work(isolated_dirs):
    for seed in (-1, 2 ** 32, 1.5):
        with pytest.raises(ValueError, match="seed must be a whole number"):
            train_scratch(seed=seed, log=None)


def test_a_configuration_is_strict_about_keys_and_types(tmp_path, monkeypatch):
    # A key it does not know is refused, not dropped (a config.json's `epochs` would train 5 epochs, not 1), and
    # wrong types are ValueErrors that say what to change, not TypeErrors.
    from dropout_gluon import RunConfig

    with pytest.raises(ValueError, match=r"unknown configuration key 'epochs' \(did you mean 'num_epochs'\?\)"):
        RunConfig.from_dict({"model": "gluon", "epochs": 1})
    with pytest.raises(ValueError, match="data_dir must be a folder's path"):
        RunConfig.from_dict({"data_dir": 5})
    with pytest.raises(ValueError, match=r"data_release must be one of 'final', 'first', got \[\]"):
        RunConfig(data_release=[])
    assert RunConfig.from_dict(RunConfig(model="gluon").to_dict()) == RunConfig(model="gluon")
    with pytest.raises(ValueError, match="unknown configuration key 'numerics'"):  # config.json's record: not a field
        RunConfig.from_dict({**RunConfig().to_dict(), "numerics": {}})
    # A folder given relative to where the run started: the same folder wherever its config.json is used
    monkeypatch.chdir(tmp_path)
    assert RunConfig(data_dir="data").data_dir == os.path.join(os.getcwd(), "data")
    assert RunConfig(data_dir=tmp_path / "data") == RunConfig.from_dict(RunConfig(data_dir="data").to_dict())
