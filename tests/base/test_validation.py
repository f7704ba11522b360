"""One check per kind of setting: numpy integers accepted, bools and non-finite numbers refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ppl_vae import SVIConfig
from ppl_vae.errors import ConfigError
from ppl_vae.models.gan import GANConfig
from ppl_vae.validation import check_int, check_number, check_positive_int


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_integers_of_any_integral_type_are_accepted(value):
    checked = check_positive_int(value, "epochs")
    assert checked == 3 and type(checked) is int


@pytest.mark.parametrize("value,message", [
    (0, "epochs must be a positive integer; got 0"),
    (True, "epochs must be a positive integer; got True"),
    (2.0, "epochs must be a positive integer; got 2.0"),
    ("3", "epochs must be a positive integer; got '3'"),
])
def test_bad_integers_get_one_line_naming_the_setting(value, message):
    with pytest.raises(ConfigError) as raised:
        check_positive_int(value, "epochs")
    assert str(raised.value) == message


def test_integer_ranges_say_what_is_allowed():
    assert check_int(np.int64(0), "seed", 0) == 0
    with pytest.raises(ConfigError, match=r"num_bins must be an integer >= 2; got 1"):
        check_int(1, "num_bins", 2)
    with pytest.raises(ConfigError, match=r"side must be an integer in \[1, 8\]; got 9"):
        check_int(9, "side", 1, 8)


@pytest.mark.parametrize("value", [0.0, -1, math.nan, math.inf, True, "0.1", None])
def test_bad_numbers_are_refused(value):
    with pytest.raises(ConfigError, match="learning_rate must be a positive number"):
        check_number(value, "learning_rate")


def test_configs_use_the_same_checks():
    config = SVIConfig(epochs=np.int64(2), batch_size=np.int32(64), learning_rate=np.float32(1e-3))
    assert type(config.epochs) is int and type(config.learning_rate) is float  # checkpoint-safe
    assert check_number(0, "beta", positive=False) == 0.0
    for make in (lambda: SVIConfig(learning_rate=math.nan), lambda: GANConfig(learning_rate=math.nan)):
        with pytest.raises(ConfigError, match="learning_rate must be a positive number; got nan"):
            make()
    with pytest.raises(ConfigError, match="kl_warmup_epochs must be a non-negative integer"):
        SVIConfig(kl_warmup_epochs=-1)
