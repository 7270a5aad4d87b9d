"""DNNBrain's ``dnnbrain.dnn``: :mod:`.core` (the data classes) and :mod:`.base` (functions)."""
