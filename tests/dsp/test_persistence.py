"""What persists over a measured noise is kept; noise grown louder everywhere and the profile's tones are not."""

from __future__ import annotations

import numpy as np

from destatic.dsp.persistence import persistent_gain


def test_a_few_bins_clear_of_the_noise_keep_their_wiener_gain_and_the_rest_nothing():
    noise = np.full((1, 64), 2.0)
    power = np.repeat(noise[:, np.newaxis, :], 3, axis=1)
    power[..., 10:13] *= 16  # 12 dB over the noise: fully weighted
    gain = persistent_gain(power, noise, np.ones(64, bool))
    np.testing.assert_allclose(gain[..., 10:13], 1 - 1 / 16)
    assert not gain[..., :10].any() and not gain[..., 13:].any()


def test_noise_grown_louder_everywhere_is_not_taken_for_something_that_persists():
    noise = np.linspace(1.0, 4.0, 64)[np.newaxis]
    power = np.repeat(16 * noise[:, np.newaxis, :], 3, axis=1)
    power[..., 10:13] *= 16  # a note over the louder noise is still kept
    gain = persistent_gain(power, noise, np.ones(64, bool))
    assert not gain[..., :10].any() and not gain[..., 13:].any()
    np.testing.assert_allclose(gain[..., 10:13], 1 - 1 / 16)


def test_the_bins_of_the_profiles_tones_are_never_kept():
    noise = np.ones((1, 64))
    power = np.ones((1, 3, 64))
    power[..., 10:13] = 100.0
    free = np.ones(64, bool)
    free[9:14] = False  # a tone without phase, as a separate recording gives it
    assert not persistent_gain(power, noise, free).any()
