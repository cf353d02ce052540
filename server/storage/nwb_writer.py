"""The NWB file, written with pynwb from what :mod:`server.storage.export_contents` gathers.

Imported only when an export runs (:func:`server.storage.nwb_export.export_nwb`): pynwb is
the ``nwb`` extra. Each image is read from the session file while its dataset is written,
so memory holds one image at a time however long the session was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import DynamicTable, VectorData, VectorIndex
from hdmf.data_utils import GenericDataChunkIterator
from pynwb import NWBHDF5IO, NWBFile
from pynwb.base import ImageReferences, Images
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject
from pynwb.image import IndexSeries, RGBImage

from server.storage.export_contents import Contents, Metadata, Picture, Table

#: Columns larger than this are written gzip-compressed (the codes of a long session:
#: 3,000 images x 4,096 floats are 49 MB).
COMPRESS_BYTES = 1 << 20
#: The processing module of the records that NWB has no type of its own for.
MODULE = "xdream"
MODULE_DESCRIPTION = (
    "xdream-rig's records of the session: the optimizer's view of each image, every "
    "response, the event log, the settings"
)


class _StoredImage(GenericDataChunkIterator):
    """One image, read from the session file only when hdmf writes it (in one piece)."""

    def __init__(self, picture: Picture) -> None:
        self._picture = picture
        super().__init__(buffer_shape=picture.shape, chunk_shape=picture.shape)

    def _get_data(self, selection: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self._picture.read())[selection]

    def _get_maxshape(self) -> tuple[int, ...]:
        return self._picture.shape

    def _get_dtype(self) -> np.dtype[Any]:
        return np.dtype(np.uint8)


def _images(pictures: list[Picture]) -> Images:
    """The distinct images, in export order (``order_of_images``: what indices point to)."""
    images = [
        RGBImage(
            name=p.name,
            data=H5DataIO(_StoredImage(p), compression="gzip", compression_opts=1),
            description=p.description,
        )
        for p in pictures
    ]
    return Images(
        name="images",
        images=images,
        description="every distinct image of the session at its stored resolution: the "
        "evolved images generation by generation, then the natural reference images",
        order_of_images=ImageReferences(name="order_of_images", data=images),
    )


def _data(values: np.ndarray) -> Any:
    return H5DataIO(values, compression="gzip") if values.nbytes > COMPRESS_BYTES else values


def _columns(table: Table) -> list[VectorData]:
    """The table's columns; a list-per-row column is its values and their index."""
    out = []
    for name, c in table.items():
        out.append(VectorData(name=name, description=c.description, data=_data(c.data)))
        if c.ends is not None:
            out.append(VectorIndex(name=f"{name}_index", data=c.ends, target=out[-1]))
    return out


def _nwbfile(meta: Metadata) -> NWBFile:
    """The file with its metadata: session, subject, experimenter, notes, the rig."""
    subject = meta.subject
    nwbfile = NWBFile(
        session_description=meta.description,
        identifier=meta.identifier,
        session_id=meta.identifier,
        session_start_time=meta.start,
        experiment_description=meta.experiment_description,
        experimenter=meta.experimenter or None,
        keywords=["XDream", "closed-loop", "image synthesis", "visual neurons"],
        notes=meta.notes or None,
        subject=None if subject is None else Subject(
            subject_id=subject.subject_id, species=subject.species, sex=subject.sex,
            age=subject.age, description="as the session's settings and the export name it",
        ),
    )  # fmt: skip
    if meta.rig is not None:
        nwbfile.create_device(
            name=meta.rig.replace("/", "_"),
            description=f"the presenter {meta.rig!r} (its hello.name) that showed the images",
        )
    return nwbfile


def _add_trials(nwbfile: NWBFile, trials: Table, images: Images | None) -> None:
    """The trials table, and the series of the images they showed (those in the file)."""
    nwbfile.trials = TimeIntervals(
        name="trials",
        description="one per presentation the rig reported, in time order",
        columns=_columns(trials),
    )
    shown = trials["image_index"].data >= 0
    if images is None or not shown.any():
        return
    nwbfile.add_stimulus(
        IndexSeries(
            name="presentations",
            data=trials["image_index"].data[shown].astype(np.uint32),
            unit="N/A",
            indexed_images=images,
            timestamps=trials["start_time"].data[shown],
            description="the image shown (index into stimulus_templates/images) at each "
            "onset; trials whose image the file lacks are left out",
        )
    )


def write(contents: Contents, path: Path) -> None:
    """Write ``contents`` as a new NWB file at ``path``."""
    nwbfile = _nwbfile(contents.metadata)
    images = _images(contents.pictures) if contents.pictures else None
    if images is not None:
        nwbfile.add_stimulus_template(images)
    if contents.trials is not None:
        _add_trials(nwbfile, contents.trials, images)
    module = nwbfile.create_processing_module(MODULE, MODULE_DESCRIPTION)
    for name, (description, table) in contents.records.items():
        module.add(DynamicTable(name=name, description=description, columns=_columns(table)))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
