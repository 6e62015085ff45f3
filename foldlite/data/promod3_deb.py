"""The Debian package ``promod3-data``: download it (``apt-get download``, nothing installed)
and take ``structure_db.dat`` out of it without dpkg (an ``ar`` archive holding
``data.tar.xz``; read with the standard library).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

from foldlite.errors import InputError
from foldlite.fileio import atomic_open

PACKAGE = "promod3-data"
#: The package version whose contents were measured (Debian bookworm).
KNOWN_VERSION = "3.2.1+ds-6"
KNOWN_DEB_SHA256 = "7d1011a2686ea92e263f3daf9940f787351ff94f19eb47646c624754d80b8f56"
#: Path of the database inside the package's data archive.
DB_MEMBER = "usr/share/promod3/loop_data/structure_db.dat"


class _Window(io.RawIOBase):
    """A read-only window ``[start, start + size)`` of a binary file."""

    def __init__(self, fh: io.BufferedReader, start: int, size: int):
        self.fh, self.start, self.size, self.pos = fh, start, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        self.fh.seek(self.start + self.pos)
        data = self.fh.read(n)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)


def ar_members(path: str | os.PathLike) -> list[tuple[str, int, int]]:
    """Members of an ``ar`` archive (a .deb): [(name, data offset, size)]."""
    path = Path(path)
    size = path.stat().st_size
    out = []
    with open(path, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise InputError(f"{path}: not a Debian package (no 'ar' archive signature)")
        pos = 8
        while pos < size:
            fh.seek(pos)
            head = fh.read(60)
            if len(head) < 60 or head[58:60] != b"`\n":
                raise InputError(f"{path}: truncated or corrupt Debian package (bad member header "
                                 f"at byte {pos + 1:,})")
            name = head[:16].decode("ascii", "replace").strip().rstrip("/")
            try:
                msize = int(head[48:58].decode("ascii").strip())
            except ValueError:
                raise InputError(f"{path}: corrupt Debian package (member size at byte "
                                 f"{pos + 49:,})") from None
            if pos + 60 + msize > size:
                raise InputError(f"{path}: truncated Debian package: member {name} needs "
                                 f"{pos + 60 + msize:,} bytes, the file has {size:,}")
            out.append((name, pos + 60, msize))
            pos += 60 + msize + (msize & 1)
    return out


def extract_structure_db(deb: str | os.PathLike, dest: str | os.PathLike,
                         member: str = DB_MEMBER) -> tuple[int, str]:
    """Extract ``structure_db.dat`` from the .deb to ``dest`` (atomically).

    Returns (size in bytes, sha256). Reads the ``ar`` archive and the ``data.tar.*`` inside it
    with the standard library (``zstd``/``dpkg-deb`` are used only for a ``data.tar.zst``).
    """
    deb, dest = Path(deb), Path(dest)
    if not deb.is_file():
        raise InputError(f"{deb}: Debian package not found")
    members = ar_members(deb)
    data = [m for m in members if m[0].startswith("data.tar")]
    if not data:
        raise InputError(f"{deb}: no data.tar.* member; members are {[m[0] for m in members]}")
    name, start, msize = data[0]
    comp = name.rsplit(".", 1)[-1] if name != "data.tar" else ""
    proc = None
    with open(deb, "rb") as fh:
        if comp in ("xz", "gz", "bz2", ""):
            stream: Any = io.BufferedReader(_Window(fh, start, msize), 1 << 20)
            mode = f"r|{comp}" if comp else "r|"
        elif comp == "zst":
            if shutil.which("zstd"):
                cmd = ["zstd", "-dc"]
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                _feed_async(proc, fh, start, msize)
            elif shutil.which("dpkg-deb"):
                proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                        stdout=subprocess.PIPE)
            else:
                raise InputError(f"{deb}: {name} is zstd-compressed; install zstd or dpkg")
            stream, mode = proc.stdout, "r|"
        else:
            raise InputError(f"{deb}: unsupported data member {name}")
        try:
            with tarfile.open(fileobj=stream, mode=mode) as tar:
                for info in tar:
                    if info.name.lstrip("./") == member and info.isfile():
                        src = tar.extractfile(info)
                        return _copy_hashed(src, dest, info.size, deb)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InputError(f"{deb}: corrupt data archive {name}: {e}") from None
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
    raise InputError(f"{deb}: the package has no {member}; is it {PACKAGE}?")


def _feed_async(proc: subprocess.Popen, fh: Any, start: int, size: int) -> None:
    data = _Window(fh, start, size)

    def feed() -> None:
        try:
            while chunk := data.read(1 << 20):
                proc.stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    threading.Thread(target=feed, daemon=True).start()


def _copy_hashed(src: Any, dest: Path, size: int, deb: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with atomic_open(dest, "wb") as out:
        while chunk := src.read(1 << 22):
            h.update(chunk)
            out.write(chunk)
            n += len(chunk)
        if n != size:
            raise InputError(f"{deb}: truncated package: {DB_MEMBER} has {n:,} of {size:,} bytes")
    return n, h.hexdigest()


def download_deb(dest_dir: str | os.PathLike) -> Path:
    """``apt-get download promod3-data`` into ``dest_dir``; returns the .deb."""
    dest_dir = Path(dest_dir)
    if not shutil.which("apt-get"):
        raise InputError("apt-get is not available to download the promod3-data package; "
                         "download promod3-data_*.deb on a Debian/Ubuntu machine (apt-get "
                         "download promod3-data) and pass --deb PATH, or pass --db "
                         "structure_db.dat")
    proc = subprocess.run(["apt-get", "download", PACKAGE], cwd=dest_dir, capture_output=True,
                          text=True)
    debs = sorted(dest_dir.glob(f"{PACKAGE}_*.deb"))
    if proc.returncode != 0 or not debs:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise InputError(f"apt-get download {PACKAGE} failed ({msg[-1] if msg else 'no output'});"
                         " run 'apt-get update' first if the package is unknown, or pass --deb "
                         "PATH / --db PATH")
    return debs[0]
