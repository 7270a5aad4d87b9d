"""DNNBrain's ``dnnbrain.io``: its file classes live in :mod:`.fileio`."""
