"""DNNBrain's ``dnnbrain.utils.util``: ``gen_dmask`` and ``normalize``.

The rest of DNNBrain's module (video frames with OpenCV, clustering with
scikit-learn, RSA statistics) is out of scope.
"""

from __future__ import annotations

from collections.abc import Sequence

from dnnmask_xr.act.select import mask_from_flags
from dnnmask_xr.dnnbrain import missing_names
from dnnmask_xr.dnnbrain.dnn.base import normalize
from dnnmask_xr.dnnbrain.dnn.core import Mask
from dnnmask_xr.errors import UsageError

__all__ = ["gen_dmask", "normalize"]

__getattr__ = missing_names(__name__, (
    "ceiling_RSA", "clustering", "get_frame_time_info", "permutation_RSA", "topk_accuracy",
), "video frames, clustering and RSA statistics, with OpenCV and scikit-learn")


def gen_dmask(layers: Sequence[str] | None = None, channels: Sequence[int] | str = "all",
              dmask_file: str | None = None) -> Mask:
    """Make a :class:`~dnnmask_xr.dnnbrain.dnn.core.Mask` from layers and channels, or a file.

    By DNNBrain's rules (those of ``dnn_mask -layer ... -chn ...``): one
    layer takes all the channels given; several layers are kept whole with
    ``'all'``, or take one channel each, paired in order.

    Parameters
    ----------
    layers
        Layer names, or None to load ``dmask_file``.
    channels
        Channel numbers (1-based), or ``'all'``.
    dmask_file
        A ``.dmask.csv`` file, or None.

    Returns
    -------
    Mask
        The mask; every row and column of each layer kept.

    Raises
    ------
    UsageError
        If both or neither of ``layers`` and ``dmask_file`` are given,
        ``layers`` is empty or names a layer twice, or several layers
        come with a number of channels other than one each.
    """
    if (layers is None) == (dmask_file is None):
        raise UsageError("give either layers (with channels) or dmask_file, not both, not "
                         "neither")
    dmask = Mask()
    if layers is None:
        dmask.load(dmask_file)  # type: ignore[arg-type]
        return dmask
    # the rules of dnn_mask's -layer and -chn, which DNNBrain's command hands over here
    whole = isinstance(channels, str) and channels == "all"
    flags = mask_from_flags(layers, None if whole else channels)
    for layer, axes in flags.to_dnnbrain().items():
        dmask.set(layer, channels=axes["chn"])
    return dmask
