"""DNNBrain's ``dnnbrain.utils``: :mod:`.util` (``gen_dmask``, ``normalize``)."""
