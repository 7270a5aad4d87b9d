"""The xarray side: activation files as labelled, lazy ``xarray`` objects.

``array`` (lazy layer arrays over the chunk reader), ``store`` (the one
read path: files to labelled layers), ``backend`` (the ``dnnact`` engine),
``reader`` (``open_act``), ``activations`` (the layer container),
``save`` (any container to a write plan), ``datatree``, ``neuroid`` and
``options``. Everything here calls down into :mod:`dnnmask_xr.act`, never
the other way.
"""
