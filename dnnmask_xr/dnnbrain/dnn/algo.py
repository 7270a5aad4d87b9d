"""DNNBrain's ``dnnbrain.dnn.algo`` (saliency, receptive fields in PyTorch): out of scope."""

from dnnmask_xr.dnnbrain import out_of_scope

out_of_scope(__name__, "algorithms on networks in PyTorch: saliency, receptive fields, "
             "optimal stimuli")
