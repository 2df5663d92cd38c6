"""Resumable downloader against a loopback HTTP server (127.0.0.1, ephemeral port) with Range support.

No test may reach beyond loopback: an autouse fixture makes any other socket connection fail loudly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import mango_lite.datasets.download as dl
from mango_lite.cli import main
from mango_lite.datasets.download import SOURCES, download, extract_archive, fetch_dataset, instructions
from mango_lite.errors import DataError

PAYLOAD = bytes((i * 7 + i // 251) % 256 for i in range(200_003))
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Refuse every socket connection that is not to 127.0.0.1 / ::1."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise RuntimeError(f"test tried to reach non-loopback address {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


class Server:
    """Serves ``files`` (path -> bytes). Knobs: ``ignore_range`` (answer 200 with the whole file),
    ``cut_after`` (announce the full length but close after that many body bytes, once)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ignore_range = False
        self.cut_after: int | None = None
        self.bytes_sent = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and not outer.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is not None:
                    cut, outer.cut_after = outer.cut_after, None
                    outer.bytes_sent += cut  # counted before writing: the client may finish first
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                outer.bytes_sent += len(body)
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    with Server() as s:
        s.files["/blob.bin"] = PAYLOAD
        yield s


def test_full_download(server, tmp_path):
    dest = tmp_path / "sub" / "blob.bin"
    seen = []
    out = download(f"{server.url}/blob.bin", dest, sha256=SHA, chunk=65536, timeout=5,
                   progress=lambda done, total: seen.append((done, total)))
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "blob.bin.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) == 4
    assert server.requests == [("/blob.bin", None)]
    # an existing complete file is kept without any request
    download(f"{server.url}/blob.bin", dest, sha256=SHA, timeout=5)
    assert len(server.requests) == 1


def test_resume_from_truncated_part(server, tmp_path):
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:123_456])
    download(f"{server.url}/blob.bin", dest, sha256=SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/blob.bin", "bytes=123456-")]
    assert server.bytes_sent == len(PAYLOAD) - 123_456  # only the missing tail travelled


def test_interrupted_transfer_keeps_part_then_resumes(server, tmp_path):
    dest = tmp_path / "blob.bin"
    server.cut_after = 50_000
    with pytest.raises(DataError, match="run again to resume"):
        download(f"{server.url}/blob.bin", dest, timeout=5, chunk=8192)
    part = tmp_path / "blob.bin.part"
    assert not dest.exists() and part.read_bytes() == PAYLOAD[:50_000]
    download(f"{server.url}/blob.bin", dest, sha256=SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD and server.requests[-1] == ("/blob.bin", "bytes=50000-")


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.ignore_range = True
    (tmp_path / "blob.bin.part").write_bytes(b"stale bytes that must not survive")
    download(f"{server.url}/blob.bin", tmp_path / "blob.bin", sha256=SHA, timeout=5)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_complete_part_finishes_on_416(server, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    download(f"{server.url}/blob.bin", tmp_path / "blob.bin", sha256=SHA, timeout=5)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD and server.bytes_sent == 0


def test_checksum_mismatch_is_an_error_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "blob.bin"
    with pytest.raises(DataError, match=r"blob\.bin: sha256 mismatch .* expected 0{64}, got " + SHA):
        download(f"{server.url}/blob.bin", dest, sha256="0" * 64, timeout=5)
    assert not dest.exists() and not (tmp_path / "blob.bin.part").exists()


def test_http_errors_name_the_url(server, tmp_path):
    with pytest.raises(DataError, match=r"/missing\.bin: HTTP 404"):
        download(f"{server.url}/missing.bin", tmp_path / "m.bin", timeout=5)
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match=rf"127\.0\.0\.1:{port}/x: cannot connect"):
        download(f"http://127.0.0.1:{port}/x", tmp_path / "x", timeout=5)
    with pytest.raises(DataError, match="every source failed"):
        dl.download_first((f"{server.url}/a", f"{server.url}/b"), tmp_path / "ab", timeout=5)


def test_local_path_and_file_url_sources(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    a = download(str(src), tmp_path / "a.bin", sha256=SHA)
    assert a.read_bytes() == PAYLOAD
    (tmp_path / "b.bin.part").write_bytes(PAYLOAD[:1000])
    b = download(src.as_uri(), tmp_path / "b.bin", sha256=SHA)
    assert b.read_bytes() == PAYLOAD
    with pytest.raises(DataError, match="source file not found"):
        download(str(tmp_path / "none.bin"), tmp_path / "c.bin")


def _tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_extract_archive_strips_top_folder_and_refuses_escape(tmp_path):
    arc = tmp_path / "a.tar.gz"
    arc.write_bytes(_tarball({"mmimdb/split.json": b"{}", "mmimdb/dataset/1.json": b"[]"}))
    out = extract_archive(arc, tmp_path / "root")
    assert (out / "split.json").read_bytes() == b"{}" and (out / "dataset" / "1.json").exists()
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(_tarball({"../evil.txt": b"x"}))
    with pytest.raises(DataError, match="unsafe member"):
        extract_archive(bad, tmp_path / "root2")
    assert not (tmp_path / "evil.txt").exists()


def test_fetch_mmimdb_downloads_and_extracts(server, tmp_path, monkeypatch):
    server.files["/mmimdb.tar.gz"] = _tarball({"mmimdb/split.json": b'{"train": [], "dev": [], "test": []}'})
    src = SOURCES["mmimdb"]
    local = dataclasses.replace(src.files[0], urls=(f"{server.url}/gone.tar.gz", f"{server.url}/mmimdb.tar.gz"))
    monkeypatch.setitem(dl.SOURCES, "mmimdb", dataclasses.replace(src, files=(local,)))
    written = fetch_dataset("mmimdb", tmp_path / "mm", log=lambda s: None)
    assert written == [tmp_path / "mm"] and (tmp_path / "mm" / "split.json").exists()
    assert not (tmp_path / "mm" / "mmimdb.tar.gz").exists()  # archive removed after extraction
    assert [p for p, _ in server.requests] == ["/gone.tar.gz", "/mmimdb.tar.gz"]  # mirror fallback


def test_registry_and_instructions():
    assert set(SOURCES) == {"nyudv2", "sunrgbd", "taskonomy", "mmimdb"}
    assert all(f.sha256 is None for s in SOURCES.values() for f in s.files + s.lists + s.official)
    urls = {u for s in SOURCES.values() for f in s.files + s.lists + s.official for u in f.urls}
    assert "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat" in urls
    assert "https://archive.org/download/mmimdb/mmimdb.tar.gz" in urls
    assert "http://rgbd.cs.princeton.edu/data/SUNRGBD.zip" in urls
    for name in SOURCES:
        text = instructions(name, "/data/X")
        assert f"data verify {name} --root /data/X" in text
    assert "drive.google.com/drive/folders/1mXmOXVsd5l9-gYHk92Wpn6AcKAbE0m3X" in instructions("nyudv2", "r")
    assert "/data/X/labels/train_0.png" in instructions("sunrgbd", "/data/X")
    assert "git sparse-checkout" in instructions("taskonomy", "r")
    assert "Kaggle" in instructions("mmimdb", "r")


def test_cli_download_manual_dataset_prints_steps_without_network(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dl, "download", lambda *a, **k: pytest.fail("no download expected"))
    assert main(["data", "download", "sunrgbd", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "DFormer" in out and f"{tmp_path}/RGB/train_0.jpg" in out
    assert main(["data", "download", "mmimdb", "--root", str(tmp_path), "--instructions"]) == 0
    assert "archive.org" in capsys.readouterr().out


def test_cli_download_failure_is_a_clean_error(server, tmp_path, capsys, monkeypatch):
    src = SOURCES["taskonomy"]
    lists = tuple(dataclasses.replace(f, urls=(f"{server.url}/nope/{f.filename}",)) for f in src.lists)
    monkeypatch.setitem(dl.SOURCES, "taskonomy", dataclasses.replace(src, lists=lists))
    assert main(["data", "download", "taskonomy", "--root", str(tmp_path), "--lists"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'train_domain.txt'}: every source failed") and "HTTP 404" in err
