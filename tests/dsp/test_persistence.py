"""What persists over a measured noise is kept; noise grown louder everywhere and the profile's tones are not; inside
a voice, only what looks like a held partial."""

from __future__ import annotations

import numpy as np

from destatic.dsp.persistence import PARTIAL_OVER_DB, partial_weight, persistent_gain


def test_a_few_bins_clear_of_the_noise_keep_their_wiener_gain_and_the_rest_nothing():
    noise = np.full((1, 64), 2.0)
    power = np.repeat(noise[:, np.newaxis, :], 3, axis=1)
    power[..., 10:13] *= 16  # 12 dB over the noise: fully weighted
    (gain,) = persistent_gain(power, noise, np.ones(64, bool))
    np.testing.assert_allclose(gain[..., 10:13], 1 - 1 / 16)
    assert not gain[..., :10].any() and not gain[..., 13:].any()


def test_noise_grown_louder_everywhere_is_not_taken_for_something_that_persists():
    noise = np.linspace(1.0, 4.0, 64)[np.newaxis]
    power = np.repeat(16 * noise[:, np.newaxis, :], 3, axis=1)
    power[..., 10:13] *= 16  # a note over the louder noise is still kept
    (gain,) = persistent_gain(power, noise, np.ones(64, bool))
    assert not gain[..., :10].any() and not gain[..., 13:].any()
    np.testing.assert_allclose(gain[..., 10:13], 1 - 1 / 16)


def test_the_bins_of_the_profiles_tones_are_never_kept():
    noise = np.ones((1, 64))
    power = np.ones((1, 3, 64))
    power[..., 10:13] = 100.0
    free = np.ones(64, bool)
    free[9:14] = False  # a tone without phase, as a separate recording gives it
    assert not persistent_gain(power, noise, free)[0].any()


def test_inside_a_voice_the_gain_starts_further_over_the_noise():
    noise = np.ones((1, 64))
    power = np.ones((1, 3, 64))
    power[..., 10:13] = 10 ** ((PARTIAL_OVER_DB - 1) / 10)  # kept away from voices, not inside them
    free = np.ones(64, bool)
    assert persistent_gain(power, noise, free)[0][..., 10:13].all()
    assert not persistent_gain(power, noise, free, over_db=(PARTIAL_OVER_DB,))[0].any()


def test_a_held_partial_is_one_and_flat_or_coming_and_going_power_is_zero():
    half, frames = 6, 20
    power = np.ones((1, frames + 2 * half, 64))
    power[..., 20] = 100.0  # a held note: 20 dB over its neighbours, level steady
    power[..., 40] = 100.0  # a burst: as peaky, but only in every other frame (20 dB of spread)
    power[:, ::2, 40] = 1.0
    weight = partial_weight(power, half)
    assert weight.shape == (1, frames, 64)
    np.testing.assert_array_equal(weight[..., 19:22], 1.0)  # the peak and the bins beside it (a partial's shoulders)
    assert not weight[..., 40].any()
    assert not weight[..., :18].any() and not weight[..., 23:39].any()  # flat: no peak
