"""Property-based tests: any input either works or raises ppl_vae's own clear error.

Hypothesis generates arrays of arbitrary shape, dtype and values (NaN, inf,
huge, empty, ragged, colour layouts), IDX files cut or corrupted at any byte,
and tensors for the models' entry points. The property is the same every
time: a correct result, or a :class:`~ppl_vae.errors.PplVaeError`, never a
raw torch/numpy/Pyro exception, and on the command line never a traceback
nor a partially written output folder.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ppl_vae import VAE, LinearGaussian, load_dataset
from ppl_vae.cli import main
from ppl_vae.errors import PplVaeError
from ppl_vae.inference import elbo, iwae, naive_prior

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

NUMERIC_DTYPES = st.one_of(
    hnp.floating_dtypes(endianness="="), hnp.integer_dtypes(endianness="="),
    hnp.unsigned_integer_dtypes(endianness="="), hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(endianness="="), st.just(np.dtype(">f4")), st.just(np.dtype("<f8")),
)
ARRAYS = hnp.arrays(NUMERIC_DTYPES, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6))


@contextlib.contextmanager
def _saved(array: np.ndarray, allow_pickle: bool = False):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.npy"
        np.save(path, array, allow_pickle=allow_pickle)
        yield path


def _loads_or_refuses(name: str, **kwargs):
    try:
        data = load_dataset(name, **kwargs)
    except PplVaeError:
        return None
    for x in (data.train_x, data.test_x):
        assert x.dim() == 2 and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert data.train_x.shape[1] == data.test_x.shape[1] == data.data_dim
    return data


@FUZZ
@given(ARRAYS)
def test_npy_loader_loads_or_raises_its_own_error(array):
    with _saved(array) as path:
        data = _loads_or_refuses(f"npy:{path}")
    if data is not None and array.dtype == np.uint8:
        assert 0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.floats(), min_size=1, max_size=4), min_size=2, max_size=4))
def test_ragged_or_object_arrays_are_refused_not_unpickled(rows):
    ragged = np.empty(len(rows), dtype=object)
    ragged[:] = rows
    with _saved(ragged, allow_pickle=True) as path, pytest.raises(PplVaeError, match="npy"):
        load_dataset(f"npy:{path}")


def _idx(magic_type: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    header = struct.pack(">BBBB", 0, 0, magic_type, len(shape)) + b"".join(
        struct.pack(">I", side) for side in shape)
    return header + payload


def _idx_folder(folder: Path, num_train: int = 6, num_test: int = 4) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {}
    for stem, count in (("train", num_train), ("t10k", num_test)):
        files[f"{stem}-images-idx3-ubyte"] = _idx(
            0x08, (count, 28, 28), rng.integers(0, 256, (count, 28, 28), dtype=np.uint8).tobytes())
        files[f"{stem}-labels-idx1-ubyte"] = _idx(
            0x08, (count,), rng.integers(0, 10, count, dtype=np.uint8).tobytes())
    return files


@FUZZ
@given(st.data())
def test_idx_files_cut_or_corrupted_anywhere_load_or_raise_their_own_error(data):
    files = _idx_folder(Path())
    name = data.draw(st.sampled_from(sorted(files)))
    content = files[name]
    damage = data.draw(st.sampled_from(["truncate", "flip", "gzip-truncate"]))
    if damage == "truncate":
        content = content[:data.draw(st.integers(0, len(content) - 1))]
    elif damage == "flip":
        position = data.draw(st.integers(0, min(len(content) - 1, 40)))
        content = content[:position] + bytes([content[position] ^ 0xFF]) + content[position + 1:]
    else:
        packed = gzip.compress(content)
        content = packed[:data.draw(st.integers(0, len(packed) - 1))]
        name += ".gz"
    with tempfile.TemporaryDirectory() as folder:
        for other, good in files.items():
            (Path(folder) / other).write_bytes(good)
        if name.endswith(".gz"):
            (Path(folder) / name[:-3]).unlink()
        (Path(folder) / name).write_bytes(content)
        _loads_or_refuses("mnist", root=folder)


TENSORS = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.float16]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    .map(torch.from_numpy),
    st.lists(st.floats(0, 1), min_size=4, max_size=4),
    st.none(),
)


def _float_batches():
    values = st.floats(allow_nan=True, allow_infinity=True, width=32)
    return hnp.arrays(np.float32, st.tuples(st.integers(0, 4), st.sampled_from([3, 4, 5])),
                      elements=values).map(torch.from_numpy)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {"vae": VAE(4, latent_dim=2, hidden_dims=(8,)),
            "gaussian-vae": VAE(4, latent_dim=2, hidden_dims=(8,), likelihood="gaussian"),
            "ppca": LinearGaussian(4, latent_dim=2)}


ENTRY_POINTS = {
    "encode": lambda model, x: model.encode(x),
    "reconstruct": lambda model, x: model.reconstruct(x),
    "elbo": lambda model, x: elbo(model, x, 3).per_point,
    "iwae": lambda model, x: iwae(model, x, 3).per_point,
    "naive_prior": lambda model, x: naive_prior(model, x, 3).per_point,
}


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=st.one_of(_float_batches(), TENSORS), name=st.sampled_from(["vae", "gaussian-vae", "ppca"]),
       entry=st.sampled_from(sorted(ENTRY_POINTS)))
def test_model_entry_points_compute_or_raise_their_own_error(models, x, name, entry):
    model = models[name]
    try:
        out = ENTRY_POINTS[entry](model, x)
    except PplVaeError:
        return
    # What was accepted was a proper batch, and gives finite numbers.
    assert isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape == (x.shape[0], 4)
    assert torch.isfinite(x).all()
    for value in out if isinstance(out, tuple) else (out,):
        assert torch.isfinite(value).all()


@settings(max_examples=12, deadline=None, derandomize=True)
@given(hnp.arrays(st.sampled_from([np.float32, np.float64, np.uint8, np.int32]),
                  st.tuples(st.integers(0, 12), st.sampled_from([1, 3, 16]))),
       st.sampled_from(["bernoulli", "gaussian"]))
def test_cli_train_on_any_array_finishes_or_fails_in_one_line_leaving_no_output(array, likelihood):
    with _saved(array) as path:
        out = path.parent / "run"
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            status = main(["train", "--data", f"npy:{path}", "--out", str(out), "--epochs", "1",
                           "--latent-dim", "2", "--hidden-dims", "4", "--likelihood", likelihood,
                           "--quiet", "--device", "cpu"])
        message = stderr.getvalue()
        assert status in (0, 2), message
        assert "Traceback" not in message
        if status == 2:
            assert message.count("\n") == 1 and "error:" in message
            assert not (out / "checkpoint.pt").exists()
        else:
            assert (out / "checkpoint.pt").exists() and (out / "summary.json").exists()


# ----- checkpoint structure: random deletions and type changes of fields (issue 14) ------------

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(2**40, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(torch.zeros(3)), st.just(torch.tensor(float("nan"))),
    st.just(torch.zeros(2, dtype=torch.uint8)),
)


def _mutate(checkpoint, path, action, replacement):
    parent = checkpoint
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz-run") / "run"
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["train", "--data", "digits", "--latent-dim", "2", "--hidden-dims", "4",
                     "--epochs", "1", "--batch-size", "512", "--quiet", "--out", str(out)]) == 0
    return out


def _one_line_or_success(argv):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    message = stderr.getvalue()
    assert "Traceback" not in message
    assert status == 0 or (status == 2 and message.count("\n") == 1 and "error:" in message), message
    return status


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_checkpoint_structures_load_or_fail_in_one_line_everywhere(tiny_run, data):
    """Delete or retype fields anywhere in a real checkpoint (resealed, so the schema must speak)."""
    from ppl_vae.checkpoint import content_digest

    checkpoint = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    for _ in range(data.draw(st.integers(1, 3))):
        # A top-level field, then deeper with probability 2/3 at each level.
        path = (data.draw(st.sampled_from(sorted(k for k in checkpoint if k != "sha256"))),)
        value = checkpoint[path[0]]
        while isinstance(value, (dict, list)) and value and data.draw(st.integers(0, 2)):
            key = data.draw(st.sampled_from(list(value.keys()) if isinstance(value, dict)
                                            else list(range(len(value)))))
            path, value = (*path, key), value[key]
        _mutate(checkpoint, path, data.draw(st.sampled_from(["delete", "replace"])),
                data.draw(ODD_VALUES))
    checkpoint["sha256"] = content_digest(checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        run.mkdir()
        for name in ("checkpoint.pt", "metrics.jsonl", ".ppl_vae_manifest.json"):
            (run / name).write_bytes((tiny_run / name).read_bytes())
        torch.save(checkpoint, run / "checkpoint.pt")
        command = data.draw(st.sampled_from(["sample-png", "sample-npy", "evaluate", "resume"]))
        argv = {
            "sample-png": ["sample", "--checkpoint", str(run), "--num-samples", "4",
                           "--out", str(Path(folder) / "s.png")],
            "sample-npy": ["sample", "--checkpoint", str(run), "--num-samples", "4",
                           "--out", str(Path(folder) / "s.npy")],
            "evaluate": ["evaluate", "--checkpoint", str(run), "--elbo-samples", "2",
                         "--iwae-samples", "2"],
            "resume": ["train", "--data", "digits", "--latent-dim", "2", "--hidden-dims", "4",
                       "--epochs", "2", "--batch-size", "512", "--quiet", "--out", str(run),
                       "--resume"],
        }[command]
        _one_line_or_success(argv)


# ----- every CLI option with random values: checked before any work, in one line -----------------


class _ReachedWork(Exception):
    """Raised in place of the first piece of real work: every option passed the checks."""


def _option_values():
    return st.one_of(
        st.integers(-2**70, 2**70).map(str), st.integers(-3, 3).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e309", "-0.0", "", "0x10", "1_000", "٣"]),
        st.text(max_size=6),
    )


_FUZZED_OPTIONS = {
    "train": ["--data", "--latent-dim", "--hidden-dims", "--likelihood", "--observation-scale",
              "--binarize", "--epochs", "--batch-size", "--learning-rate", "--elbo", "--engine",
              "--num-particles", "--beta", "--kl-warmup-epochs", "--clip-norm",
              "--checkpoint-every", "--seed", "--device"],
    "sample": ["--num-samples", "--seed", "--device", "--out"],
    "evaluate": ["--elbo-samples", "--iwae-samples", "--split", "--seed", "--device"],
    "compare": ["--num-points", "--num-samples", "--warmup-steps", "--num-chains", "--scheme",
                "--methods", "--elbo-samples", "--iwae-samples", "--fit-max-steps", "--seed",
                "--device"],
}


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(sorted(_FUZZED_OPTIONS)), data=st.data())
def test_random_option_values_are_refused_in_one_line_before_any_work(monkeypatch, tmp_path,
                                                                      command, data):
    import ppl_vae.cli as cli

    def reached(*args, **kwargs):
        raise _ReachedWork

    monkeypatch.setattr(cli, "load_dataset", reached)
    monkeypatch.setattr(cli, "_load_model", reached)
    out = tmp_path / f"out-{data.draw(st.integers(0, 10**9))}"
    base = {"train": ["train", "--out", str(out), "--device", "cpu"],
            "sample": ["sample", "--checkpoint", "ckpt", "--out", str(out) + ".png",
                       "--device", "cpu"],
            "evaluate": ["evaluate", "--checkpoint", "ckpt", "--device", "cpu"],
            "compare": ["compare", "--checkpoint", "ckpt", "--out", str(out), "--device", "cpu"]}
    argv = list(base[command])
    options = data.draw(st.lists(st.sampled_from(_FUZZED_OPTIONS[command]), min_size=1,
                                 max_size=3, unique=True))
    for option in options:
        argv += [f"{option}={data.draw(_option_values())}"]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
    except _ReachedWork:
        return  # every value was accepted
    message = stderr.getvalue()
    assert status == 2 and message.count("\n") == 1 and "Traceback" not in message, message
    assert not out.exists()  # nothing was created for a refused command line
