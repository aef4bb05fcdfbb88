"""Tasks: shapes, dtypes, seeds, targets, loaders and their errors, baselines."""

import gzip
import math
import struct

import numpy as np
import pytest

from helpers import assert_close
from pathgeom.tasks import TASKS, make_task
from pathgeom.tasks import _grammar
from pathgeom.tasks.adding import AddingProblem
from pathgeom.tasks.charlm import UNKNOWN, CharLM, load_corpus
from pathgeom.tasks.digits import SequentialDigits, load_idx, load_mnist

SMALL = (3000, 400, 400)       # built-in corpus sizes that keep the tests fast


def rng(seed=0):
    return np.random.default_rng(seed)


def check_interface(task, B=3):
    X, Y = task.sample(rng(), B)
    assert X.dtype == np.float64 and X.shape == (B, task.T, task.n_in)
    Xt, Yt = task.test
    assert Xt.dtype == np.float64 and Xt.shape[1:] == (task.T, task.n_in)
    if task.loss == "mse":
        shape = (task.n_out,) if task.outputs == "last" else (task.T, task.n_out)
        assert Y.dtype == np.float64 and Yt.dtype == np.float64
    else:
        shape = () if task.outputs == "last" else (task.T,)
        assert Y.dtype == np.int64 and Yt.dtype == np.int64
        assert Y.min() >= 0 and Y.max() < task.n_out
    assert Y.shape == (B,) + shape and Yt.shape == (len(Xt),) + shape
    assert isinstance(task.describe(), str) and "\n" not in task.describe()
    assert np.isfinite(task.baseline) and task.baseline > 0
    with pytest.raises(ValueError, match="batch size"):
        task.sample(rng(), 0)
    with pytest.raises(TypeError, match="Generator"):
        task.sample(0, 2)
    assert not Xt.flags.writeable and not Yt.flags.writeable


# ---------------------------------------------------------------- adding problem
class TestAdding:
    def test_interface(self):
        check_interface(AddingProblem(T=7, n_test=20))

    @pytest.mark.parametrize("T", [2, 3, 10, 11])
    def test_markers_one_in_each_half_and_target_is_the_marked_sum(self, T):
        X, Y = AddingProblem(T, n_test=5).sample(rng(1), 400)
        markers = X[..., 1]
        assert set(np.unique(markers)) <= {0.0, 1.0} and (markers.sum(axis=1) == 2).all()
        half = T // 2
        assert (markers[:, :half].sum(axis=1) == 1).all()
        assert (markers[:, half:].sum(axis=1) == 1).all()
        i = markers[:, :half].argmax(axis=1)
        j = half + markers[:, half:].argmax(axis=1)
        rows = np.arange(len(X))
        assert_close(Y[:, 0], X[rows, i, 0] + X[rows, j, 0])
        assert (X[..., 0] >= 0).all() and (X[..., 0] < 1).all()
        # every position of each half is used (uniform placement)
        assert len(np.unique(i)) == half and len(np.unique(j)) == T - half

    def test_seed_fixes_the_test_set_and_rng_alone_drives_sampling(self):
        a, b, c = AddingProblem(20, 50, seed=4), AddingProblem(20, 50, seed=4), \
            AddingProblem(20, 50, seed=5)
        assert np.array_equal(a.test[0], b.test[0]) and np.array_equal(a.test[1], b.test[1])
        assert not np.array_equal(a.test[0], c.test[0])
        s1, s2 = a.sample(rng(9), 8), c.sample(rng(9), 8)
        assert np.array_equal(s1[0], s2[0]) and np.array_equal(s1[1], s2[1])
        # the training stream of default_rng(seed) is not the test set
        assert not np.array_equal(a.sample(rng(4), 50)[0], a.test[0])

    def test_mean_predictor_baseline_is_one_sixth(self):
        task = AddingProblem(30, n_test=20000, seed=0)
        assert task.baseline == 1 / 6
        assert abs(np.mean((task.test[1] - 1.0) ** 2) - 1 / 6) < 0.01

    @pytest.mark.parametrize("kw, msg", [(dict(T=1), "T"), (dict(T=2.5), "T"),
                                         (dict(T=True), "T"), (dict(T=5, n_test=0), "n_test"),
                                         (dict(T=5, seed=-1), "seed")])
    def test_bad_arguments(self, kw, msg):
        with pytest.raises(ValueError, match=msg):
            AddingProblem(**kw)


# ---------------------------------------------------------------- IDX / digits
def write_idx(path, array, code=0x08, compress=False):
    array = np.asarray(array)
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if compress else raw)
    return path


def write_mnist(directory, n_train=12, n_test=5, rows=3, cols=4, compress=False, seed=0):
    g = rng(seed)
    data = {"train": (g.integers(0, 256, (n_train, rows, cols), dtype=np.uint8),
                      g.integers(0, 10, n_train, dtype=np.uint8)),
            "t10k": (g.integers(0, 256, (n_test, rows, cols), dtype=np.uint8),
                     g.integers(0, 10, n_test, dtype=np.uint8))}
    gz = ".gz" if compress else ""
    for split, (images, labels) in data.items():
        write_idx(directory / f"{split}-images-idx3-ubyte{gz}", images, compress=compress)
        write_idx(directory / f"{split}-labels-idx1-ubyte{gz}", labels, compress=compress)
    return data


class TestIdx:
    @pytest.mark.parametrize("compress", [False, True])
    def test_round_trip(self, tmp_path, compress):
        images = rng().integers(0, 256, (4, 3, 5), dtype=np.uint8)
        path = write_idx(tmp_path / "x-idx3-ubyte", images, compress=compress)
        with open(path, "rb") as f:
            head = f.read(4)
        if not compress:
            assert int.from_bytes(head, "big") == 0x00000803
        out = load_idx(path)
        assert out.dtype == np.uint8 and np.array_equal(out, images)

    def test_other_types_in_native_byte_order(self, tmp_path):
        a = np.arange(-3, 3, dtype=np.int32).reshape(2, 3) * 1000
        out = load_idx(write_idx(tmp_path / "a", a, code=0x0C))
        assert out.dtype == np.int32 and out.dtype.isnative and np.array_equal(out, a)
        f = np.linspace(-1, 1, 5)
        assert np.array_equal(load_idx(write_idx(tmp_path / "f", f, code=0x0E)), f)

    def test_malformed_files_name_the_file_and_the_fault(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nothere"):
            load_idx(tmp_path / "nothere")
        bad = tmp_path / "badmagic"
        bad.write_bytes(b"\x12\x34\x08\x01" + b"\0\0\0\1" + b"\7")
        with pytest.raises(ValueError, match=r"badmagic.*0x12340801"):
            load_idx(bad)
        short = tmp_path / "short"
        short.write_bytes(b"\0\0")
        with pytest.raises(ValueError, match="short.*2 bytes"):
            load_idx(short)
        header = tmp_path / "header"
        header.write_bytes(b"\0\0\x08\x03" + b"\0\0\0\2")
        with pytest.raises(ValueError, match="header.*truncated"):
            load_idx(header)
        size = tmp_path / "size"
        write_idx(size, np.zeros((2, 3), np.uint8))
        size.write_bytes(size.read_bytes()[:-1])
        with pytest.raises(ValueError, match=r"size.*\(2, 3\).*5 data bytes"):
            load_idx(size)
        broken = tmp_path / "broken.gz"
        broken.write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\1\5")[:-6])
        with pytest.raises(ValueError, match="broken.gz.*gzip"):
            load_idx(broken)


class TestMnist:
    @pytest.mark.parametrize("compress", [False, True])
    def test_load_and_sequences(self, tmp_path, compress):
        data = write_mnist(tmp_path, compress=compress)
        task = SequentialDigits(tmp_path)
        check_interface(task)
        assert (task.T, task.n_in, task.n_out, task.n_train, task.n_test) == (12, 1, 10, 12, 5)
        X, Y = task.test
        images, labels = data["t10k"]
        # row-major pixel order, scaled by 255
        assert_close(X[..., 0], images.reshape(5, 12) / 255.0)
        assert np.array_equal(Y, labels.astype(np.int64))
        Xs, Ys = task.sample(rng(3), 30)
        train = {tuple(im.ravel()): lab for im, lab in zip(*data["train"])}
        for x, y in zip(Xs, Ys):
            assert train[tuple(np.round(x[:, 0] * 255).astype(np.uint8))] == y

    def test_test_subset_is_fixed_by_seed(self, tmp_path):
        write_mnist(tmp_path, n_test=9)
        a, b = SequentialDigits(tmp_path, n_test=4, seed=1), SequentialDigits(tmp_path, 4, 1)
        assert a.test[0].shape == (4, 12, 1)
        assert np.array_equal(a.test[0], b.test[0])
        with pytest.raises(ValueError, match="n_test=10.*9"):
            SequentialDigits(tmp_path, n_test=10)

    def test_baseline_is_the_label_entropy(self, tmp_path):
        data = write_mnist(tmp_path)
        freq = np.bincount(data["train"][1], minlength=10) / 12
        freq = freq[freq > 0]
        assert_close(SequentialDigits(tmp_path).baseline, -(freq * np.log(freq)).sum())

    def test_missing_and_inconsistent_files(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            SequentialDigits(tmp_path / "none")
        write_mnist(tmp_path)
        (tmp_path / "t10k-labels-idx1-ubyte").unlink()
        with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
            load_mnist(tmp_path)
        write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
        with pytest.raises(ValueError, match="5 images and 4 labels"):
            load_mnist(tmp_path)
        write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(5, 11, np.uint8))
        with pytest.raises(ValueError, match="0..9"):
            load_mnist(tmp_path)
        write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((5, 1), np.uint8))
        with pytest.raises(ValueError, match="1-d uint8"):
            load_mnist(tmp_path)

    def test_bad_source(self):
        with pytest.raises(ValueError, match="source"):
            SequentialDigits(source=3)


def test_builtin_digits_without_sklearn_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'pathgeom\[digits\]'"):
        SequentialDigits("builtin")


@pytest.fixture(scope="module")
def builtin_digits():
    pytest.importorskip("sklearn")
    return SequentialDigits("builtin", seed=0)


class TestBuiltinDigits:
    @pytest.fixture
    def task(self, builtin_digits):
        return builtin_digits

    def test_interface(self, task):
        check_interface(task)
        assert (task.T, task.n_train, task.n_test) == (64, 1500, 297)
        X = task.test[0]
        assert X.min() >= 0 and X.max() <= 1 and X.max() == 1.0
        assert abs(task.baseline - math.log(10)) < 0.01

    def test_split_fixed_by_seed_and_disjoint(self, task):
        again, other = SequentialDigits("builtin", seed=0), SequentialDigits("builtin", seed=1)
        assert np.array_equal(task.test[0], again.test[0])
        assert not np.array_equal(task.test[0], other.test[0])
        test_rows = {x.tobytes() for x in task._test[0]}
        train_rows = [x.tobytes() for x in task._train[0]]
        assert len(task._test[0]) + len(train_rows) == 1797
        # sklearn's digits contain no duplicated image, so a disjoint split shares none
        assert not test_rows.intersection(train_rows)


# ---------------------------------------------------------------- character LM
@pytest.fixture(scope="module")
def lm():
    return CharLM("builtin", seq_len=20, seed=0, n_chars=SMALL)


class TestCharLM:
    def test_interface(self, lm):
        check_interface(lm)
        assert lm.n_in == lm.n_out == len(lm.alphabet) and lm.alphabet[0] == UNKNOWN
        assert lm.valid[0].shape == ((len(lm.valid_ids) - 1) // 20, 20, lm.n_in)
        assert (lm.train_ids > 0).all()          # the unknown symbol never occurs in training

    def test_onehot_and_y_is_x_shifted_by_one(self, lm):
        X, Y = lm.sample(rng(2), 16)
        assert (X.sum(axis=2) == 1).all() and set(np.unique(X)) == {0.0, 1.0}
        ids = X.argmax(axis=2)
        assert np.array_equal(ids[:, 1:], Y[:, :-1])
        text = lm.decode(lm.train_ids)
        for x, y in zip(ids, Y):       # each window is a real stretch of the training text
            window = lm.decode(np.append(x, y[-1]))
            assert window in text

    def test_eval_windows_are_consecutive_and_cover_the_split(self, lm):
        X, Y = lm.test
        n = (len(lm.test_ids) - 1) // 20
        assert X.shape == (n, 20, lm.n_in)
        assert np.array_equal(X.argmax(axis=2).ravel(), lm.test_ids[:n * 20])
        assert np.array_equal(Y.ravel(), lm.test_ids[1:n * 20 + 1])
        few = CharLM("builtin", seq_len=20, n_chars=SMALL, n_test=3)
        assert few.test[0].shape[0] == 3 and few.valid[1].shape == (3, 20)
        with pytest.raises(ValueError, match="n_test=100 but the valid split has only 19"):
            CharLM("builtin", seq_len=20, n_chars=SMALL, n_test=100)

    def test_seed_fixes_the_corpus(self, lm):
        same = CharLM("builtin", seq_len=20, seed=0, n_chars=SMALL)
        other = CharLM("builtin", seq_len=20, seed=1, n_chars=SMALL)
        assert np.array_equal(lm.test[0], same.test[0]) and np.array_equal(lm.test[1],
                                                                           same.test[1])
        assert not np.array_equal(lm.test_ids, other.test_ids)
        assert not np.array_equal(lm.train_ids[:len(lm.test_ids)], lm.test_ids)

    def test_baseline_is_the_unigram_entropy(self, lm):
        text = lm.decode(lm.train_ids)
        counts = np.array([text.count(c) for c in set(text)], dtype=float)
        p = counts / counts.sum()
        assert_close(lm.baseline, -(p * np.log(p)).sum())
        assert_close(lm.bits_per_char(lm.baseline), lm.baseline / math.log(2))

    def test_default_builtin_size_and_speed(self):
        import time
        t = time.perf_counter()
        task = CharLM()
        assert time.perf_counter() - t < 1.0
        assert (len(task.train_ids), len(task.valid_ids), len(task.test_ids)) == (
            100_000, 10_000, 10_000)
        assert task.T == 50 and task.n_unknown == {"valid": 0, "test": 0}

    @pytest.mark.parametrize("kw, msg", [(dict(seq_len=0), "seq_len"),
                                         (dict(seq_len=500, n_chars=(3000, 400, 400)),
                                          "valid split.*400 characters"),
                                         (dict(n_chars=(10, 10)), "three sizes"),
                                         (dict(corpus=5), "corpus"),
                                         (dict(n_test=0), "n_test")])
    def test_bad_arguments(self, kw, msg):
        with pytest.raises(ValueError, match=msg):
            CharLM(**kw)


class TestGrammar:
    def test_brackets_match_and_span_many_characters(self):
        text = _grammar.generate(rng(0), 20_000)
        whole = text[:text.rindex("\n") + 1]
        spans = _grammar.bracket_spans(whole)        # raises on any mismatch
        assert len(spans) > 100 and spans.mean() > 30 and spans.max() > 150
        assert len(text) == 20_000

    def test_words_come_from_the_innermost_open_group(self):
        text = _grammar.generate(rng(1), 20_000)
        text = text[:text.rindex("\n")]                  # whole sentences only
        kind_of = {b[0]: k for k, b in enumerate(_grammar.BRACKETS)}
        closers = {b[1] for b in _grammar.BRACKETS}
        stack, own, total = [], 0, 0
        for token in text.replace("(", " ( ").replace(")", " ) ").replace("[", " [ ").replace(
                "]", " ] ").replace("{", " { ").replace("}", " } ").replace("<", " < ").replace(
                ">", " > ").split():
            if token in kind_of:
                stack.append(kind_of[token])
            elif token in closers:
                stack.pop()
            elif token != ".":
                allowed = set(_grammar.SHARED)
                if stack:
                    allowed |= set(_grammar.OWN[stack[-1]])
                    own += token in _grammar.OWN[stack[-1]]
                    total += 1
                assert token in allowed, (token, stack)
        assert abs(own / total - _grammar.P_OWN) < 0.05

    def test_bracket_spans_detects_mismatch(self):
        with pytest.raises(ValueError, match="mismatched"):
            _grammar.bracket_spans("(ab]")


class TestCorpusDirectory:
    def test_plain_layout_and_unknown_characters(self, tmp_path):
        (tmp_path / "train.txt").write_text("abcabcab ca\n" * 5, encoding="utf-8")
        (tmp_path / "valid.txt").write_text("abcxyz\n", encoding="utf-8")
        (tmp_path / "test.txt").write_text("cab é\n", encoding="utf-8")
        task = CharLM(tmp_path, seq_len=3)
        assert task.alphabet == (UNKNOWN, "\n", " ", "a", "b", "c")
        assert task.n_unknown == {"valid": 3, "test": 1}
        assert task.decode(task.valid_ids) == "abc" + UNKNOWN * 3 + "\n"
        assert np.array_equal(task.encode("xa"), [0, 3])
        assert task.test[1].tolist() == [[3, 4, 2]]           # "cab é" -> "ab "

    def test_ptb_char_layout_is_decoded(self, tmp_path):
        for split in ("train", "valid", "test"):
            (tmp_path / f"ptb.char.{split}.txt").write_text("a b _ c d\nc _ a\n")
        train, valid, test = load_corpus(tmp_path)
        assert train == valid == test == "ab cd\nc a\n"

    def test_text8_layout_is_split_90_5_5(self, tmp_path):
        text = "".join(chr(97 + i % 26) for i in range(200))
        (tmp_path / "text8").write_text(text)
        train, valid, test = load_corpus(tmp_path)
        assert (len(train), len(valid), len(test)) == (180, 10, 10)
        assert train + valid + test == text

    def test_missing_and_bad_files(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            load_corpus(tmp_path / "nope")
        (tmp_path / "notes.md").write_text("x")
        with pytest.raises(FileNotFoundError, match=r"none of the accepted.*train.txt.*notes"):
            load_corpus(tmp_path)
        (tmp_path / "train.txt").write_text("abc")
        with pytest.raises(FileNotFoundError, match="not valid.txt, test.txt"):
            load_corpus(tmp_path)
        (tmp_path / "valid.txt").write_bytes(b"\xff\xfe\xfa")
        (tmp_path / "test.txt").write_text("abc")
        with pytest.raises(ValueError, match="valid.txt.*not UTF-8"):
            load_corpus(tmp_path)
        (tmp_path / "valid.txt").write_text("abc")
        with pytest.raises(ValueError, match="n_chars"):
            CharLM(tmp_path, seq_len=2, n_chars=(1, 1, 1))


# ---------------------------------------------------------------- make_task
def test_make_task(tmp_path):
    assert set(TASKS) == {"adding", "digits", "charlm"}
    task = make_task("adding", T=12, n_test=7, seed=2)
    assert isinstance(task, AddingProblem) and task.T == 12
    assert np.array_equal(task.test[0], AddingProblem(12, 7, 2).test[0])
    assert isinstance(make_task("charlm", seq_len=5, n_chars=SMALL), CharLM)
    write_mnist(tmp_path)
    assert make_task("digits", source=tmp_path).T == 12
    with pytest.raises(ValueError, match="unknown task 'mnist'.*'adding', 'digits', 'charlm'"):
        make_task("mnist")


def test_read_only_test_sets_and_inputs_are_not_mutated():
    task = AddingProblem(5, n_test=4)
    X, Y = task.test
    with pytest.raises(ValueError):
        X[0, 0, 0] = 3.0
    r = rng(0)
    state = r.bit_generator.state
    task.sample(r, 2)
    assert r.bit_generator.state != state        # sampling consumed the given rng only


def test_builtin28_digits_are_the_8x8_images_upsampled():
    pytest.importorskip("sklearn")
    from pathgeom.tasks import SequentialDigits
    small = SequentialDigits("builtin", seed=4)
    big = SequentialDigits("builtin28", seed=4)
    assert big.T == 784 and small.T == 64 and big.n_test == small.n_test
    Xs, Ys = small.test
    Xb, Yb = big.test
    np.testing.assert_array_equal(Ys, Yb)  # the same split, image for image
    assert Xb.shape == (len(Yb), 784, 1) and Xb.min() >= 0 and Xb.max() <= 1
    # block means of the 28x28 image follow the 8x8 image (3.5 x 3.5 pixels per source pixel)
    img = Xb[0, :, 0].reshape(28, 28)
    src = Xs[0, :, 0].reshape(8, 8)
    assert np.corrcoef(img[1::4, 1::4][:7, :7].ravel(), src[:7, :7].ravel())[0, 1] > 0.9
    assert "stand-in" in big.describe()
