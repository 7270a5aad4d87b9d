"""The xarray backend ``dnnact``: activation files through ``xr.open_*``.

It forwards to the one read path (:func:`~dnnmask_xr.xarray_.store.open_layers`)
and :func:`~dnnmask_xr.to_datatree`, so labels and laziness are theirs;
xarray itself applies ``chunks=``, following each layer's
``encoding["preferred_chunks"]`` (the file's HDF5 chunks), and its
``cache=``: layers are opened uncached, and xarray wraps them in its
memory cache as it wraps every backend's arrays.
:func:`~dnnmask_xr.open_act` opens files through this backend too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar, Union

from xarray.backends import BackendEntrypoint

if TYPE_CHECKING:
    import xarray as xr

    from dnnmask_xr.formats.stim import StimArg
    from dnnmask_xr.xarray_.activations import Activations

# xarray imports every backend's entry point for every open_dataset call of
# every user: the package itself is imported only when a file is opened here
# (names from it are for annotations only).
#: ``lock=``: None or True for xarray's HDF5 lock, False for h5py's own alone, or a lock.
LockArg = Union[bool, "AbstractContextManager[Any]", None]

#: What the backend hands xarray: a dataset, a tree, or (for open_groups) the first group.
T = TypeVar("T", "xr.Dataset", "xr.DataTree")

#: xarray's decoding keywords, which it passes to every backend that names them.
DECODERS = ("mask_and_scale", "decode_times", "concat_characters", "decode_coords",
            "use_cftime", "decode_timedelta")


class DnnActBackendEntrypoint(BackendEntrypoint):
    """Open ``.act.h5`` activation files with ``engine="dnnact"``.

    ``xr.open_datatree(path, engine="dnnact")`` gives the stimuli on the
    root and one node per layer; ``xr.open_dataset(path, engine="dnnact",
    group="conv5")`` (or ``open_dataarray``) gives one layer. Both take
    ``stim=``, a ``.stim.csv`` path, ``allow_external=``, ``lock=`` and
    ``storage_options=``, like :func:`~dnnmask_xr.open_act`.

    xarray's decoding keywords (``mask_and_scale``, ``decode_times``,
    ``decode_timedelta``, ``use_cftime``, ``concat_characters``,
    ``decode_coords``, and ``decode_cf``, which xarray turns into them) are
    accepted and have nothing to do: layers hold plain numbers with no
    fill value, scale or time units, and the stimulus fields are
    coordinates by the file's layout, not by a CF attribute.
    """

    description = "Open DNNBrain activation files (.act.h5) as labelled, lazy layers"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", *DECODERS, "group",
                               "stim", "allow_external", "lock", "storage_options")
    supports_groups = True

    def open_dataset(
        self,
        filename_or_obj: str | os.PathLike[str],
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale: object = None,
        decode_times: object = None,
        concat_characters: object = None,
        decode_coords: object = None,
        use_cftime: object = None,
        decode_timedelta: object = None,
        group: str | None = None,
        stim: StimArg = None,
        allow_external: bool = False,
        lock: LockArg = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> xr.Dataset:
        """Open one layer (``group="conv5"``), or the root's stimuli (``group="/"``).

        Without ``group``, a file of one layer opens that layer.
        """
        from dnnmask_xr.errors import SelectionError
        from dnnmask_xr.xarray_.datatree import as_groups

        name = None if group is None else _group_name(group)
        with _opened(filename_or_obj, stim, allow_external, lock, storage_options) as acts:
            if name is None and len(acts) != 1:
                raise SelectionError(
                    f"{os.fspath(filename_or_obj)!r} holds {len(acts)} layers "
                    f"({', '.join(acts) or 'none'}); open one with group=, e.g. "
                    f"group={next(iter(acts), 'conv5')!r}, or all with xr.open_datatree"
                )
            if name == "":
                dataset = as_groups(acts)["/"]
            else:
                dataset = _layer_dataset(acts, name or next(iter(acts)))
            return _handed_over(_drop(dataset, drop_variables), acts)

    def open_datatree(
        self,
        filename_or_obj: str | os.PathLike[str],
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale: object = None,
        decode_times: object = None,
        concat_characters: object = None,
        decode_coords: object = None,
        use_cftime: object = None,
        decode_timedelta: object = None,
        group: str | None = None,
        stim: StimArg = None,
        allow_external: bool = False,
        lock: LockArg = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> xr.DataTree:
        """Open every layer: the stimuli on the root, one node per layer.

        With ``group="conv5"``, the tree of that node alone, as xarray's
        netCDF backends open a group: the layer, its stimuli and numbers.
        """
        import xarray as xr

        from dnnmask_xr.xarray_.datatree import to_datatree

        name = "" if group is None else _group_name(group)
        with _opened(filename_or_obj, stim, allow_external, lock, storage_options) as acts:
            if name:
                tree = xr.DataTree(_layer_dataset(acts, name), name=name)
            else:
                tree = to_datatree(acts)
            if drop_variables:
                tree = tree.map_over_datasets(lambda dataset: _drop(dataset, drop_variables))
            return _handed_over(tree, acts)

    def open_groups_as_dict(
        self,
        filename_or_obj: str | os.PathLike[str] | list[str | os.PathLike[str]],
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale: object = None,
        decode_times: object = None,
        concat_characters: object = None,
        decode_coords: object = None,
        use_cftime: object = None,
        decode_timedelta: object = None,
        group: str | None = None,
        stim: StimArg | list[StimArg] = None,
        allow_external: bool = False,
        lock: LockArg = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> dict[str, xr.Dataset]:
        """Open every node of :meth:`open_datatree` as a dataset, by path (``/``, ``/conv5``).

        Each layer's dataset holds its stimulus index, as a netCDF group
        holds its dimensions; a list of files opens them as one set.
        :func:`~dnnmask_xr.open_act` opens files this way, through
        ``xr.open_groups``.
        """
        from dnnmask_xr.xarray_.datatree import as_groups

        name = "" if group is None else _group_name(group)
        with _opened(filename_or_obj, stim, allow_external, lock, storage_options) as acts:
            groups = {f"/{name}": _layer_dataset(acts, name)} if name else as_groups(acts)
            groups = {path: _drop(dataset, drop_variables) for path, dataset in groups.items()}
            _handed_over(groups[next(iter(groups))], acts)
            return groups

    def guess_can_open(self, filename_or_obj: object) -> bool:
        """Claim paths ending in ``.act.h5`` or ``.act.zarr``."""
        return isinstance(filename_or_obj, str | os.PathLike) and os.fspath(
            filename_or_obj).endswith((".act.h5", ".act.zarr"))


def _group_name(group: object) -> str:
    """Give ``group=`` as a layer name (``""`` for the root), or refuse what names none."""
    from dnnmask_xr.errors import UsageError

    if not isinstance(group, str):
        raise UsageError(f"group={group!r} is not a layer name; give one as text, such as "
                         "group='conv5', or '/' for the root")
    return group.strip("/")


@contextlib.contextmanager
def _opened(filename_or_obj: str | os.PathLike[str], stim: StimArg, allow_external: bool,
            lock: LockArg, storage_options: Mapping[str, Any] | None
            ) -> Iterator[Activations]:
    """Open through the one read path; the files are closed if what is built fails."""
    from dnnmask_xr.xarray_.store import open_layers

    acts = open_layers(filename_or_obj, stim=stim, allow_external=allow_external, lock=lock,
                       storage_options=storage_options)
    try:
        yield acts
    except BaseException:
        acts.close()
        raise


def _handed_over(opened: T, acts: Activations) -> T:
    """Hand ``acts``'s files over to what xarray gets: closing it closes them."""
    if acts.source is not None:
        # as given: xarray would name it by its absolute path
        opened.encoding["source"] = acts.source
    opened.set_close(acts.close)
    return opened


def _layer_dataset(acts: Activations, name: str) -> xr.Dataset:
    """One layer as a dataset: its values under its name, with its coordinates."""
    from dnnmask_xr.errors import SelectionError

    try:
        array = acts[name]
    except KeyError as err:
        raise SelectionError(err.args[0]) from None
    if name in array.coords:
        # xarray refuses a variable named like one of its coordinates
        raise SelectionError(
            f"layer {name!r} has the name of a dimension or stimulus field, which an xarray "
            f"dataset cannot hold beside that coordinate; open it as a DataArray with "
            f"dnnmask_xr.open_act(path)[{name!r}]"
        )
    return array.to_dataset()


def _drop(dataset: xr.Dataset, names: str | Iterable[str] | None) -> xr.Dataset:
    return dataset if not names else dataset.drop_vars(names, errors="ignore")
