"""Zalando's mirror of Fashion-MNIST on 127.0.0.1, for a download from the published URL with no internet.

`serving(folder)` runs an HTTP proxy that answers a GET of any URL ending in the name of a .gz file in
`folder` with that file, and records the URLs asked for: with `http_proxy` pointing at it, a download from
Zalando's published http:// URLs gets those files. `published(debian, folder)` writes the final release's
four files there byte for byte as Zalando published them (their MD5s), rebuilt from Debian's copies.

Standard library only, so that anything can import it (`sys.path` holding tests/), e.g. to run the notebook
as on a host with no copy of the data:

    with mirror.serving(mirror.published(Path("/usr/share/datasets/fashion-mnist"), tmp)) as (proxy, asked):
        ... run with http_proxy=proxy, XDG_DATA_DIRS, XDG_CACHE_HOME and MXNET_HOME set to empty folders
"""
from __future__ import annotations

import contextlib
import http.server
import struct
import threading
from pathlib import Path

# Debian's copies are Zalando's .gz files with their gzip header rewritten (by dh_strip_nondeterminism: the
# file name dropped, the package's date as the time); the compressed data is the same. A header with the
# file's name and these times (found by trying the seconds of 2017-08-31) makes them Zalando's files again.
MTIMES = {"train-images-idx3-ubyte": 1504176606, "train-labels-idx1-ubyte": 1504176606,
          "t10k-images-idx3-ubyte": 1504176627, "t10k-labels-idx1-ubyte": 1504176627}


def published(debian: Path, folder: Path) -> Path:
    """Write into `folder` the final release's four .gz files as Zalando published them, from Debian's `debian`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, mtime in MTIMES.items():
        raw = (debian / (name + ".gz")).read_bytes()
        if raw[3] != 0:  # flags: Debian's header is the bare 10 bytes, the compressed data follows
            raise ValueError(f"{debian / name}.gz is not Debian's copy (its gzip header has flags {raw[3]:#x})")
        # magic, deflate, FNAME; the time; extra flags 0, OS 3 (Unix); the name; then the same compressed data
        header = b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + b"\x00\x03" + name.encode() + b"\x00"
        (folder / (name + ".gz")).write_bytes(header + raw[10:])
    return folder


@contextlib.contextmanager
def serving(folder: Path, together: int = 1):
    """`(proxy_url, requested_urls)`: a proxy serving the .gz files of `folder`, and the URLs asked of it so far.

    With `together` > 1 it answers a request for a file only once that many have come for it (or after 20 s),
    so that as many downloads of the file run at once.
    """
    files = {p.name: p for p in Path(folder).glob("*.gz")}
    requested, barriers, lock = [], {}, threading.Lock()

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # a proxy's request line holds the whole URL
            with lock:
                requested.append(self.path)
            path = next((p for name, p in files.items() if self.path.endswith("/" + name)), None)
            if path is None:
                self.send_error(404)
                return
            if together > 1:
                with lock:
                    barrier = barriers.setdefault(path.name, threading.Barrier(together, timeout=20))
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # no request log on stderr
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
