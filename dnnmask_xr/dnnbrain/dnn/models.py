"""DNNBrain's ``dnnbrain.dnn.models`` (networks in PyTorch): out of scope."""

from dnnmask_xr.dnnbrain import out_of_scope

out_of_scope(__name__, "model extraction: networks and activations computed with PyTorch")
