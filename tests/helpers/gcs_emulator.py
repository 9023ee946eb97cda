"""A real GCS API on 127.0.0.1: the PyPI package gcp-storage-emulator, in memory, run as its own
process for the length of a test, with one bucket.

The emulator's object downloads lack what GCS sends and tensorstore (under orbax) relies on: the
`x-goog-generation` header, and the conditional reads `ifGenerationNotMatch` (304 when
unchanged) and `ifGenerationMatch` (412 when changed). Without them tensorstore's re-check of a
cached OCDBT manifest fails with "Malformed StorageGeneration", depending on timing. Run as a
script, this module serves the emulator with downloads that behave as GCS's do."""
import contextlib
import socket
import subprocess
import sys
import tempfile
import time

from trainer_runs import free_port

BUCKET = "negojax-test"


@contextlib.contextmanager
def gcs_emulator():
    """Yields the environment that points every GCS client at the emulator: gcsfs (under
    negojax.storage) reads STORAGE_EMULATOR_HOST, tensorstore (under orbax) its own variable."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # It logs every request: to a file, as a pipe nobody reads would fill and stall it.
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, __file__, "start", "--host=127.0.0.1",
                             f"--port={port}", "--in-memory", f"--default-bucket={BUCKET}"],
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"the GCS emulator exited: {log.read()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.time() < deadline, "the GCS emulator did not start within 60 s"
            time.sleep(0.2)
        yield {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _serve_with_gcs_downloads(argv) -> None:
    from http import HTTPStatus

    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects
    plain_download = objects.download

    def download(request, response, storage, *args, **kwargs):
        try:
            obj = storage.get_file_obj(request.params["bucket_name"],
                                       request.params["object_id"])
        except NotFound:
            return plain_download(request, response, storage, *args, **kwargs)
        generation = str(obj["generation"])
        response["x-goog-generation"] = generation
        response["x-goog-metageneration"] = str(obj["metageneration"])
        unless = request.query.get("ifGenerationNotMatch")
        only_if = request.query.get("ifGenerationMatch")
        if unless and unless[0] == generation:
            response.status = HTTPStatus.NOT_MODIFIED
        elif only_if and only_if[0] != generation:
            response.status = HTTPStatus.PRECONDITION_FAILED
        else:
            plain_download(request, response, storage, *args, **kwargs)

    objects.download = download  # before the server module builds its routes from it
    from gcp_storage_emulator.__main__ import main
    main(argv)


if __name__ == "__main__":
    _serve_with_gcs_downloads(sys.argv[1:])
