"""What a session stored: its images (lossless, or as thumbnails), the best image so far,
a montage of each generation's best, the whole HDF5 file, and the session as NWB.

Everything that touches the file runs through ``manager.read`` (on the session's I/O thread
while it writes, read-only once it is closed), and images are encoded off the event loop.
An image that is not stored answers 404 NotFound, like a session that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from protocol.errors import NotFound
from server.engine.pictures import montage
from server.http.deps import Manager, SessionId
from server.http.errors import documented, error_response
from server.http.images import binary, encode, image_response, respond
from server.http.schemas import ErrorBody
from server.sessions.config import MAX_THREADS
from server.sessions.manager import SessionManager
from server.storage.nwb_export import NwbUnavailable, export_nwb, require_nwb
from server.storage.records import evolved_id
from server.storage.session_file import SessionFile
from server.storage.tables import thread_path

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["files"])

T = TypeVar("T")
#: 404: unknown session, image not stored, nothing scored yet; 422: a parameter that is
#: not a number (declared so FastAPI does not list a validation body this API never sends).
IMAGE = {**binary("image/png"), **documented(404, 422)}
THUMBNAIL = {**binary("image/jpeg"), **documented(404, 422)}


#: ``?thread=k``: which evolution thread of a session (0, the first, by default).
Thread = Annotated[int, Query(ge=0, le=MAX_THREADS, description="evolution thread")]


async def _stored_image(
    manager: SessionManager, session_id: str, generation: int, position: int, thread: int
) -> np.ndarray:
    """Image ``position`` of ``generation`` of ``thread`` (NotFound if that thread,
    generation or image is not stored)."""
    return await manager.read(
        session_id, lambda store: store.read_image(generation, position, thread)
    )


async def _scored(
    manager: SessionManager, session_id: str, read: Callable[[SessionFile], T | None]
) -> T:
    """``read(store)``, which finds scored images, or NotFound if it finds none."""
    found = await manager.read(session_id, read)
    if not found:
        raise NotFound(f"session {session_id} has no scored image yet")
    return found


@router.get(
    "/generations/{generation}/images/{position}.png", response_class=Response, responses=IMAGE
)
async def image(
    manager: Manager, session_id: SessionId, generation: int, position: int, thread: Thread = 0
) -> Response:
    """An image exactly as the generator made it (lossless)."""
    found = await _stored_image(manager, session_id, generation, position, thread)
    return await respond(found, cache=True)


@router.get(
    "/generations/{generation}/thumbnails/{position}.jpg",
    response_class=Response,
    responses=THUMBNAIL,
)
async def thumbnail(
    manager: Manager,
    session_id: SessionId,
    generation: int,
    position: int,
    size: Annotated[int, Query(ge=16, le=1024, description="side in px")] = 112,
    thread: Thread = 0,
) -> Response:
    """A small JPEG of an image, for overviews such as the dashboard's."""
    found = await _stored_image(manager, session_id, generation, position, thread)
    return await respond(found, size, "jpeg", cache=True)


@router.get("/references/{image}.jpg", response_class=Response, responses=THUMBNAIL)
async def reference_thumbnail(
    manager: Manager,
    session_id: SessionId,
    image: int,
    size: Annotated[int, Query(ge=16, le=1024, description="side in px")] = 112,
) -> Response:
    """A small JPEG of the session's natural reference image number ``image``."""

    def read(store: SessionFile) -> np.ndarray:
        references = store.references()
        if references is None or not 0 <= image < len(references):
            raise NotFound(f"session {session_id} has no reference image {image}")
        return references[image]

    return await respond(await manager.read(session_id, read), size, "jpeg", cache=True)


@router.get("/best.png", response_class=Response, responses=IMAGE)
async def best(manager: Manager, session_id: SessionId, thread: Thread = 0) -> Response:
    """The best-scored image so far (changes as the session runs: not cached), named
    ``<session>-g<generation>-best.png`` when saved (``-t<thread>-`` for threads past 0)."""
    generation, _, picture = await _scored(manager, session_id, lambda s: s.best(thread))
    name = f"{session_id}{_thread_part(thread)}-g{generation}-best.png"
    return await respond(picture, filename=name)


def _thread_part(thread: int) -> str:
    """What a file name of ``thread``'s images says of it (nothing for thread 0)."""
    return f"-t{thread}" if thread else ""


@router.get("/montage.png", response_class=Response, responses=IMAGE)
async def montage_png(manager: Manager, session_id: SessionId, thread: Thread = 0) -> Response:
    """The best image of every generation (of ``thread``), captioned with generation and
    score."""
    rows = await _scored(manager, session_id, lambda s: s.best_per_generation(thread))
    labels = [f"gen {g}: {score:.1f}" for g, score, _ in rows]

    def draw() -> bytes:  # composing the montage is as slow as encoding it
        return encode(montage([picture for _, _, picture in rows], labels))

    name = f"{session_id}{_thread_part(thread)}-montage-g{rows[0][0]}-g{rows[-1][0]}.png"
    return image_response(await asyncio.to_thread(draw), filename=name)


@router.get(
    "/scores.csv",
    response_class=Response,
    responses={**binary("text/csv"), **documented(404, 422)},
)
async def scores_csv(manager: Manager, session_id: SessionId) -> Response:
    """Every scored image of the complete generations, one row each, per generation each
    thread's evolved then reference images: ``generation, stimulus_id, kind, index, score,
    thread`` (index: the row among the thread's images of the generation, or the reference
    image's number; score: the mean over its presentations on the thread's objective,
    empty where none was answered; thread: 0 in a one-thread session)."""
    rows = await manager.read(session_id, score_rows)

    def text() -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["generation", "stimulus_id", "kind", "index", "score", "thread"])
        writer.writerows(rows)
        return out.getvalue()

    return Response(
        await asyncio.to_thread(text),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{session_id}-scores.csv"'},
    )


def score_rows(store: SessionFile) -> list[tuple[int, str, str, int, str, int]]:
    """The rows of :func:`scores_csv`, from the file's generation and reference tables."""
    out: list[tuple[int, str, str, int, str, int]] = []
    done, threads = store.generations_done(), store.threads
    empty = np.array([])

    def score(value: float) -> str:
        return "" if np.isnan(value) else repr(float(value))

    tables = [
        (store.table(thread_path(t, "generations"), columns=("index", "scores")),
         store.table(thread_path(t, "references"), columns=("generation", "index", "score")))
        for t in range(threads)
    ]  # fmt: skip
    for g in range(done):
        for t, (gens, refs) in enumerate(tables):
            evolved = gens.get("scores", empty)[gens.get("index", empty) == g]
            out += [
                (g, evolved_id(g, i, t, threads), "evolved", i, score(s), t)
                for i, s in enumerate(evolved)
            ]
            mine = refs.get("generation", empty) == g
            pairs = zip(refs.get("index", empty)[mine], refs.get("score", empty)[mine], strict=True)
            out += [
                (g, f"g{g}-r{k}", "reference", int(i), score(s), t)
                for k, (i, s) in enumerate(pairs)
            ]
    return out


async def _snapshot(manager: SessionManager, session_id: str, copy: Path) -> None:
    """Copy the session's HDF5 file to ``copy`` between two of its writes (consistent)."""

    def snapshot(store: SessionFile) -> None:
        if store.is_open:
            store.flush()
        shutil.copyfile(store.path, copy)

    await manager.read(session_id, snapshot)


@contextlib.contextmanager
def _scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder for a download: removed here if making the download fails, else
    once it is sent (:func:`_download`)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _download(path: Path, media_type: str) -> FileResponse:
    """``path`` as an attachment, its (temporary) folder removed once it is sent."""
    return FileResponse(
        path,
        media_type=media_type,
        filename=path.name,
        background=BackgroundTask(shutil.rmtree, path.parent, ignore_errors=True),
    )


@router.get(
    "/data",
    response_class=FileResponse,
    responses={**binary("application/x-hdf5"), **documented(404, 422)},
)
async def data(manager: Manager, session_id: SessionId) -> FileResponse:
    """The session's HDF5 file, copied between writes so the download is consistent."""
    with _scratch("xdream-download-") as folder:
        copy = folder / f"{session_id}.h5"
        await _snapshot(manager, session_id, copy)
    return _download(copy, "application/x-hdf5")


#: The answer where the server lacks the nwb extra.
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "NwbUnavailable: pynwb is not installed"}
}


@router.get(
    "/session.nwb",
    response_class=FileResponse,
    responses={**binary("application/x-nwb"), **documented(404, 422), **UNAVAILABLE},
)
async def session_nwb(manager: Manager, session_id: SessionId) -> Response:
    """The session as an NWB file (docs/nwb.md: images, trials and counts, codes, scores,
    settings, the event log), named ``<session>.nwb``: exported from a copy taken between
    writes, in a worker thread. 503 NwbUnavailable where the server lacks pynwb."""
    try:
        require_nwb()
        with _scratch("xdream-nwb-") as folder:
            copy, out = folder / f"{session_id}.h5", folder / f"{session_id}.nwb"
            await _snapshot(manager, session_id, copy)
            await asyncio.to_thread(export_nwb, copy, out)
            copy.unlink()  # the disk holds one of the two while the download is sent
    except NwbUnavailable as exc:
        return error_response(503, exc.code, str(exc))
    return _download(out, "application/x-nwb")
