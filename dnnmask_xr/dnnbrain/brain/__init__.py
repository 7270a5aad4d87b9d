"""DNNBrain's ``dnnbrain.brain`` (brain imaging data, nibabel and nipy): out of scope."""

from dnnmask_xr.dnnbrain import out_of_scope

out_of_scope(__name__, "the brain side: ROIs, brain RDMs and encoding, with nibabel and nipy")
