"""DNNBrain's ``dnnbrain.dnn.base``: the functions on activation arrays, in NumPy alone.

``dnn_mask``, ``array_statistic``, ``dnn_fe`` and ``normalize`` give
DNNBrain's results. ``dnn_fe``'s PCA is scikit-learn's (full SVD, the sign
of each component fixed as scikit-learn before 1.5 fixed it, DNNBrain's
time) and its power spectral density SciPy's ``periodogram`` (its
defaults), both computed with NumPy. Masks take numbers as DNNBrain does
(number *n* is the *n*-th unit, from 1) but by this package's rules: 0 and
negative numbers are errors, not a count from the end, and numbers in any
order or repeated are kept as given. Images, videos and the mappings to
brain data (PyTorch, OpenCV, scikit-learn) are out of scope.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from dnnmask_xr.dnnbrain import missing_names
from dnnmask_xr.errors import SelectionError, UsageError

__all__ = ["array_statistic", "dnn_fe", "dnn_mask", "normalize"]

__getattr__ = missing_names(__name__, (
    "DNNBRAIN_MODEL", "ImageProcessor", "ImageSet", "MultivariateMapping",
    "UnivariateMapping", "VideoClipSet", "VideoSet", "correlation_score",
    "correlation_scorer", "cross_val_confusion", "cross_val_scores",
    "gen_estimator_from_name", "ip",
), "images, videos and mappings to behaviour or brain data, with PyTorch, OpenCV and "
   "scikit-learn")

#: Numbers along an axis: a list of 1-based numbers, or ``'all'``.
Numbers = Sequence[int] | str | None

STATISTICS = ("max", "mean", "median", "L1", "L2")
FE_METHODS = ("pca", "hist", "psd")
FE_AXES = (None, "chn", "row_col")


def normalize(array: np.ndarray) -> np.ndarray:
    """Scale an array's values to [0, 1]: ``(array - min) / (max - min)``.

    Parameters
    ----------
    array
        Any array.

    Returns
    -------
    numpy.ndarray
        The scaled array (NaN everywhere if all values are equal, as in
        DNNBrain).
    """
    array = np.asarray(array)
    return (array - array.min()) / (array.max() - array.min())


def array_statistic(arr: np.ndarray, method: str, axis: int | tuple[int, ...] | None = None,
                    keepdims: bool = False) -> np.ndarray:
    """Reduce an array with a statistic, as DNNBrain does.

    Parameters
    ----------
    arr
        The array.
    method
        ``'max'``, ``'mean'``, ``'median'``, ``'L1'`` or ``'L2'``. The norms
        are ``numpy.linalg.norm(arr, 1 or 2, axis)``: over two axes (as
        ``Activation.pool`` asks) these are matrix norms (the largest
        column sum of absolute values; the largest singular value), as
        DNNBrain computes them.
    axis
        The axis or axes to reduce; None for the whole array.
    keepdims
        Keep the reduced axes, with length 1.

    Returns
    -------
    numpy.ndarray
        The statistic.

    Raises
    ------
    UsageError
        If ``method`` is not one of those, ``axis`` is not an axis of ``arr``,
        or a norm is asked over more than two axes (or of an array of more
        than 2 dims, with axis None).
    """
    arr = np.asarray(arr)
    if method not in STATISTICS:
        raise UsageError(f"statistic {method!r} is not one of {', '.join(STATISTICS)}")
    try:
        if method == "max":
            return np.max(arr, axis, keepdims=keepdims)
        if method == "mean":
            return np.mean(arr, axis, keepdims=keepdims)
        if method == "median":
            return np.median(arr, axis, keepdims=keepdims)
        return np.linalg.norm(arr, 1 if method == "L1" else 2, axis, keepdims=keepdims)
    except np.exceptions.AxisError:
        raise UsageError(f"axis {axis!r} is not an axis of an array of {arr.ndim} dims "
                         f"(shape {arr.shape}); give axes from {-arr.ndim} to "
                         f"{arr.ndim - 1}") from None
    except ValueError:
        # numpy.linalg.norm: a vector norm over one axis, a matrix norm over two, no more
        raise UsageError(f"statistic {method!r} over axis {axis!r} of an array of shape "
                         f"{arr.shape}: a norm is taken over one axis or two (or the whole "
                         "array of 1 or 2 dims, axis None)") from None


def dnn_mask(dnn_acts: np.ndarray, channels: Numbers = "all", rows: Numbers = "all",
             columns: Numbers = "all", *, layer: str = "array") -> np.ndarray:
    """Keep some channels, rows and columns of an activation array.

    Parameters
    ----------
    dnn_acts
        ``(n_stim, n_chn, n_row, n_col)`` array.
    channels, rows, columns
        1-based numbers to keep along each axis, in the order given
        (repeats kept), or ``'all'`` (or None) for the whole axis.
    layer
        The layer's name, for errors (this package's addition).

    Returns
    -------
    numpy.ndarray
        The part kept (the array itself if every axis is kept whole).

    Raises
    ------
    SelectionError
        If a number is not a unit of the array (0, negative, past the end)
        or the array is not 4-D; the error names the layer and the axis.
    DnnMaskError
        If numbers are not a list of integers or ``'all'``.
    """
    from dnnmask_xr.act.select import layer_positions
    from dnnmask_xr.formats.dmask import AXES, LayerMask

    mask = LayerMask({"chn": channels, "row": rows, "col": columns})
    if not mask.axes:
        return dnn_acts
    arr = np.asarray(dnn_acts)
    if arr.ndim != 4:
        raise SelectionError(f"layer {layer!r} has shape {arr.shape}; a mask applies to 4-D "
                             "activations (n_stim, n_chn, n_row, n_col)")
    labels = {axis: np.arange(1, size + 1) for axis, size in zip(AXES, arr.shape[1:],
                                                                  strict=True)}
    for axis, positions in layer_positions(layer, mask, labels, by="ordinal").items():
        arr = np.take(arr, positions, axis=1 + AXES.index(axis))
    return arr


def dnn_fe(dnn_acts: np.ndarray, method: str, n_feat: int | float,
           axis: str | None = None) -> np.ndarray:
    """Extract features of activations, as DNNBrain does.

    Parameters
    ----------
    dnn_acts
        ``(n_stim, n_chn, n_row, n_col)`` array.
    method
        ``'pca'``: the first ``n_feat`` principal components' scores (a
        float in (0, 1): as many as explain more than that share of the
        variance), as scikit-learn's ``PCA.fit_transform``; ``'hist'``: a
        histogram of ``n_feat`` equal-width bins per stimulus; ``'psd'``: the
        first ``n_feat`` values of the power spectral density, as SciPy's
        ``periodogram`` with its defaults.
    n_feat
        The number of features (a float for ``'pca'`` only).
    axis
        None: features of the whole layer, ``(n_stim, n_feat, 1, 1)``;
        ``'chn'``: along the channels at each row and column,
        ``(n_stim, n_feat, n_row, n_col)``; ``'row_col'``: along the rows
        and columns of each channel, ``(n_stim, n_chn, n_feat, 1)``.

    Returns
    -------
    numpy.ndarray
        The features, 4-D as above.

    Raises
    ------
    UsageError
        If the method or axis is unknown, or ``n_feat`` does not fit the
        method or the data.
    """
    arr = np.asarray(dnn_acts)
    if arr.ndim != 4:
        raise UsageError(f"dnn_fe takes 4-D activations (n_stim, n_chn, n_row, n_col), not "
                         f"shape {arr.shape}")
    if axis not in FE_AXES:
        raise UsageError(f"axis {axis!r} is not one of None, 'chn', 'row_col'")
    if method not in FE_METHODS:
        raise UsageError(f"feature extraction method {method!r} is not one of "
                         f"{', '.join(FE_METHODS)}")
    n_stim, n_chn, n_row, n_col = arr.shape
    arr = arr.reshape((n_stim, n_chn, n_row * n_col))
    if axis is None:
        arr = arr.reshape((n_stim, 1, -1))
    elif axis == "chn":
        arr = arr.transpose((0, 2, 1))
    n_iter = arr.shape[1]
    if method == "pca":
        feats = [_pca_scores(arr[:, i, :], n_feat) for i in range(n_iter)]
        if len({f.shape for f in feats}) > 1:
            raise UsageError(f"n_feat={n_feat} keeps a different number of components at each "
                             f"{'row and column' if axis == 'chn' else 'channel'}; give an "
                             "integer")
        new = np.asarray(feats).transpose((1, 0, 2))
    else:
        count = _whole_count(n_feat, method)
        new = np.zeros((n_stim, n_iter, count))
        for i in range(n_iter):
            for j in range(n_stim):
                if method == "hist":
                    new[j, i, :] = np.histogram(arr[j, i, :], count)[0]
                else:
                    density = _periodogram(arr[j, i, :])
                    if count > density.size:
                        raise UsageError(f"n_feat={count} is more than the {density.size} "
                                         f"frequencies of {arr.shape[2]} values")
                    new[j, i, :] = density[:count]
    if axis is None:
        return new.transpose((0, 2, 1))[:, :, :, None]
    if axis == "chn":
        return new.transpose((0, 2, 1)).reshape((n_stim, new.shape[2], n_row, n_col))
    return new[:, :, :, None]


def _whole_count(n_feat: Any, method: str) -> int:
    if isinstance(n_feat, (bool, np.bool_)) or not isinstance(n_feat, numbers.Integral) \
            or n_feat < 1:
        raise UsageError(f"n_feat={n_feat!r}: method {method!r} takes a positive integer "
                         "number of features")
    return int(n_feat)


def _pca_scores(x: np.ndarray, n_components: Any) -> np.ndarray:
    """Give ``PCA(n_components).fit_transform(x)`` as scikit-learn's full SVD solver does."""
    n_samples, n_features = x.shape
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    # scikit-learn's svd_flip before 1.5: each component's largest |u| is positive
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), range(u.shape[1])])
    u *= signs
    most = min(n_samples, n_features)
    if n_components is None:
        count = most
    elif isinstance(n_components, numbers.Integral) and not isinstance(n_components, bool):
        if not 0 <= n_components <= most:
            raise UsageError(f"n_feat={n_components} principal components: between 0 and "
                             f"min(n_stim, n_features)={most}")
        count = int(n_components)
    elif isinstance(n_components, numbers.Real) and 0 < n_components < 1:
        variance = s**2 / max(n_samples - 1, 1)
        ratio = np.cumsum(variance / variance.sum())
        count = int(np.searchsorted(ratio, n_components, side="right")) + 1
    else:
        raise UsageError(f"n_feat={n_components!r}: PCA takes an integer number of components "
                         "or a share of variance in (0, 1)")
    return u[:, :count] * s[:count]


def _periodogram(x: np.ndarray) -> np.ndarray:
    """Give ``scipy.signal.periodogram(x)[1]``: mean removed, boxcar, one-sided density."""
    x = np.asarray(x, dtype=np.float64)
    size = x.size
    density = np.abs(np.fft.rfft(x - x.mean())) ** 2 / size
    if size % 2:
        density[1:] *= 2
    else:
        density[1:-1] *= 2
    return density
