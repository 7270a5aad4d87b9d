"""DNNBrain's ``dnnbrain.viz`` (plots): out of scope."""

from dnnmask_xr.dnnbrain import out_of_scope

out_of_scope(__name__, "DNNBrain's plots")
