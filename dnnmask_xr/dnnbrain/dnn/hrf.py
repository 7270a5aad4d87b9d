"""SPM's canonical HRF and DNNBrain's ``convolve_hrf``, in NumPy alone.

DNNBrain takes the HRF from nipy (``spm_hrf``, a difference of two gamma
densities from SciPy) and convolves with SciPy's FFT convolution; here the
gamma densities come from :func:`math.lgamma` and the convolution from
:func:`numpy.fft.rfft`, so neither nipy nor SciPy is needed. The HRF equals
nipy's to float64 rounding; the convolution is the exact one to float64
rounding, where SciPy transforms DNNBrain's float32 time course in single
precision (about 1e-7 of the largest value apart).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence

import numpy as np

from dnnmask_xr.errors import UsageError

__all__ = ["convolve_hrf", "spm_hrf"]


def _gamma_pdf(x: np.ndarray, shape: float, loc: float) -> np.ndarray:
    """Give ``scipy.stats.gamma.pdf(x, shape, loc)`` (scale 1), for ``shape > 1``."""
    y = x - loc
    density = np.zeros_like(y)
    positive = y > 0
    density[positive] = np.exp((shape - 1) * np.log(y[positive]) - y[positive]
                               - math.lgamma(shape))
    return density


def spm_hrf(tr: float, oversampling: float = 16, time_length: float = 32.0,
            onset: float = 0.0) -> np.ndarray:
    """SPM's canonical HRF, sampled as nipy's ``spm_hrf`` samples it.

    Parameters
    ----------
    tr
        The repetition time, in seconds.
    oversampling
        Samples per ``tr``.
    time_length
        The kernel's length, in seconds.
    onset
        The response's onset, in seconds.

    Returns
    -------
    numpy.ndarray
        ``int(time_length / (tr / oversampling))`` samples from 0 to
        ``time_length``, summing to 1: a gamma density of shape 6 less
        0.167 times one of shape 16, as SPM's.
    """
    dt = tr / oversampling
    stamps = np.linspace(0, time_length, int(float(time_length) / dt))
    stamps -= onset / dt
    # nipy passes dt as the densities' third argument, their location
    hrf = _gamma_pdf(stamps, 6.0, dt) - 0.167 * _gamma_pdf(stamps, 16.0, dt)
    return hrf / hrf.sum()


def _convolve_columns(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Give each column of ``x`` fully convolved with ``kernel`` (SciPy's FFT method)."""
    size = x.shape[0] + kernel.size - 1
    spectrum = np.fft.rfft(x.astype(np.float64), size, axis=0)
    return np.fft.irfft(spectrum * np.fft.rfft(kernel, size)[:, None], size, axis=0)


def _check_timing(n_event: int, onsets: Sequence[float], durations: Sequence[float],
                  n_vol: object, tr: object) -> None:
    """Refuse timings that have no time course, or one read at wrong places without a word.

    A negative ``tr`` indexed the time course from its end, a negative
    duration dropped its event; the others raised NumPy's errors.
    """
    if n_event == 0:
        raise UsageError("convolve_hrf takes at least one event; there is none")
    if isinstance(n_vol, (bool, np.bool_)) or not isinstance(n_vol, numbers.Integral) \
            or n_vol < 0:
        raise UsageError(f"n_vol={n_vol!r}: the number of volumes is an integer, 0 or more")
    if isinstance(tr, (bool, np.bool_)) or not isinstance(tr, numbers.Real) \
            or not np.isfinite(tr) or tr <= 0:
        raise UsageError(f"tr={tr!r}: the repetition time is a number of seconds above 0")
    for name, times in (("onsets", onsets), ("durations", durations)):
        values = np.asarray(times, dtype=np.float64)
        if not np.isfinite(values).all() or (name == "durations" and (values < 0).any()):
            raise UsageError(f"{name} {np.asarray(times).tolist()!r}: seconds, finite"
                             + (" and 0 or more" if name == "durations" else ""))


def convolve_hrf(X: np.ndarray, onsets: Sequence[float], durations: Sequence[float],
                 n_vol: int, tr: float, ops: int = 100) -> np.ndarray:
    """Convolve each column of ``X`` with the HRF, sampled at the volumes' times.

    DNNBrain's ``dnnbrain.brain.algo.convolve_hrf``: each event holds its
    row's values from its onset for its duration on a grid of ``ops``
    points per second (from time 0: an event-free start is zero), the time
    course is convolved with :func:`spm_hrf` and read at ``n_vol`` volumes
    ``tr`` apart. It prints its progress as DNNBrain does.

    Parameters
    ----------
    X
        ``(n_event, n_sample)`` values.
    onsets, durations
        One per event, in seconds.
    n_vol
        The number of volumes.
    tr
        The repetition time, in seconds.
    ops
        Points per second: 10, 100 or 1000.

    Returns
    -------
    numpy.ndarray
        ``(n_vol, n_sample)`` float64.

    Raises
    ------
    UsageError
        If ``X`` is not 2-D or holds no event, the events and their onsets
        or durations differ in number, an onset or duration is not finite
        (or a duration below 0), ``n_vol`` is not an integer of 0 or more,
        ``tr`` not a number above 0, ``ops`` is not allowed, or the volumes
        reach past the convolved time course.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise UsageError(f"convolve_hrf takes (n_event, n_sample) values, not shape {X.shape}")
    if not X.shape[0] == len(onsets) == len(durations):
        raise UsageError(f"{X.shape[0]} events, {len(onsets)} onsets and {len(durations)} "
                         "durations: give one onset and one duration per event")
    if ops not in (10, 100, 1000):
        raise UsageError(f"ops={ops!r}: the oversampling rate is one of 10, 100, 1000")
    _check_timing(X.shape[0], onsets, durations, n_vol, tr)
    decimals = int(np.log10(ops))
    onsets = np.round(np.asarray(onsets), decimals=decimals)
    durations = np.round(np.asarray(durations), decimals=decimals)
    tr = np.round(tr, decimals=decimals)

    n_clipped = 0
    onset_min = onsets.min()
    if onset_min > 0:
        # an event of zeros from time 0, so the time course starts with the response
        X = np.insert(X, 0, np.zeros(X.shape[1]), 0)
        onsets = np.insert(onsets, 0, 0, 0)
        durations = np.insert(durations, 0, onset_min, 0)
        onset_min = 0
    elif onset_min < 0:
        print("The earliest event's onset is earlier than the start point of response.\n"
              "We clip the earlier time points after hrf_convolution to align with the "
              "response.")
        n_clipped = int(-onset_min * ops)

    batch_size = int(100000 / ops)
    bounds = np.r_[np.arange(0, X.shape[-1], batch_size), X.shape[-1]]
    vol_t = (np.arange(n_vol) * tr * ops).astype(int)
    n_time_point = int(((onsets + durations).max() - onset_min) * ops)
    hrf = spm_hrf(tr, oversampling=tr * ops)
    parts = [np.zeros((n_vol, 0))]
    for start, stop in itertools.pairwise(bounds):
        batch = X[:, start:stop]
        course = np.zeros((n_time_point, batch.shape[-1]), dtype=np.float32)
        for i, onset in enumerate(onsets):
            first = int(onset * ops)
            course[first:int(first + durations[i] * ops), :] = batch[i, :]
        convolved = _convolve_columns(course, hrf)[n_clipped:, :]
        if n_vol and vol_t[-1] >= convolved.shape[0]:
            raise UsageError(f"{n_vol} volumes {tr} s apart reach past the convolved time "
                             f"course ({convolved.shape[0] / ops} s); give fewer volumes")
        parts.append(convolved[vol_t, :])
        print(f"hrf convolution: sample {start + 1} to {stop} finished")
    return np.concatenate(parts, axis=1)
