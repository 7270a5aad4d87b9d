"""The ``.act.h5`` core: layout, selection, plans, chunks and the one writer.

Everything ``dnn_mask`` needs, on h5py and numpy alone (pandas only for a
stimulus table). Every route that writes, the command, :func:`mask_file`
and :func:`~dnnmask_xr.save_act`, builds a :class:`~dnnmask_xr.act.plan.Plan`
and hands it to :func:`~dnnmask_xr.act.write.write`, which enforces the
guarantees once.
"""
