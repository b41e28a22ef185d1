"""The one output discipline every dhm command that writes follows.

1. Before any work, `check_output` refuses an output location that would lose a user's
   file: the input dataset or model (or a folder holding it, or inside it), an existing
   path of the other kind (a file where a folder goes), and an existing non-empty folder
   or file that is not this command's own earlier output, unless --force.
2. Everything is written to a temporary path beside the target and renamed into place only
   when complete (`atomic_dir`, `atomic_path`); a replaced folder is swapped out only after
   the new one is complete. On an error, Ctrl-C, SIGTERM or a full disk the temporary
   files and any parent folders this write created are removed, and the old output stays
   as it was.
3. Every folder a command writes carries `.dhm-output.json` naming the command, which is
   how a later run recognises its own earlier output.
4. JSON that dhm reads (manifests, recipes, records) goes through `read_json`: bounded size
   and nesting, strict numbers (no NaN, Infinity), one clear line when it is not that.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from dhm.errors import OutputError, SpecError

OWNER_FILE = ".dhm-output.json"
MAX_JSON_BYTES = 64 << 20
MAX_JSON_DEPTH = 64


# ------------------------------------------------------------------ where to write


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def owner(folder: str | os.PathLike[str]) -> str | None:
    """The command whose output `folder` is (its .dhm-output.json), or None."""
    marker = Path(folder) / OWNER_FILE
    try:
        data = json.loads(marker.read_text()) if marker.is_file() and marker.stat().st_size < 4096 else None
    except (OSError, ValueError):
        return None
    return data.get("command") if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def check_output(
    path: str | os.PathLike[str],
    *,
    kind: Literal["dir", "file"],
    command: str,
    force: bool = False,
    inputs: Sequence[str | os.PathLike[str] | None] = (),
    own_file: Callable[[Path], bool] | None = None,
) -> Path:
    """Refuse, before any work, an output location that would lose something.

    `inputs` are the files and folders the command reads: the output may be none of them,
    inside none of them, and hold none of them, whatever --force says. `own_file` tells a
    file of this command's (a bench record, say) from a user's file.
    """
    path = Path(path)
    if str(path) in ("", ".") or path.name in ("", ".", ".."):
        raise OutputError(f"{str(path) or '(empty)'}: not a usable output name; give a new file or folder name")
    target = _resolved(path)
    for item in inputs:
        if item is None:
            continue
        source = _resolved(Path(item))
        if target == source or source in target.parents or target in source.parents:
            relation = "is" if target == source else "lies inside" if source in target.parents else "holds"
            raise OutputError(
                f"{path}: {relation} the input {item}; dhm never writes over what it reads (choose another output)"
            )
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{path}: is a dangling symbolic link; remove it or choose another output")
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise OutputError(f"{path}: is a file; `dhm {command}` writes a folder there (choose another output)")
        if kind == "file" and path.is_dir():
            raise OutputError(f"{path}: is a folder; `dhm {command}` writes a file there (choose another output)")
        if kind == "dir":
            try:
                empty = not any(path.iterdir())
            except OSError as exc:
                raise OutputError(f"{path}: cannot read the existing folder ({exc.strerror or exc})") from None
            if not (empty or force or owner(path) == command):
                raise OutputError(
                    f"{path}: exists and is not an earlier `dhm {command}` output; "
                    "pass --force to replace it (the old folder goes only once the new one is complete)"
                )
        elif not (force or (own_file is not None and own_file(path))):
            raise OutputError(f"{path}: exists; pass --force to replace it (only once the new file is complete)")
    existing = next((p for p in path.absolute().parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"{path}: cannot create it: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write in {existing} (permission denied)")
    return path


@contextlib.contextmanager
def _parents(folder: Path) -> Iterator[None]:
    """Create `folder` (and parents) for a write; remove the ones created if it fails."""
    created = []
    for p in reversed([folder, *folder.parents]):
        if not p.exists():
            created.append(p)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create output folder ({exc.strerror or exc})") from None
    try:
        yield
    except BaseException:
        for p in reversed(created):
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and parents) if needed and prove that files can be written in it."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"{path}: cannot create output folder: {existing} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create output folder ({exc.strerror or exc})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".dhm-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{path}: output folder is not writable ({exc.strerror or exc})") from None
    return path


def _umask_mode(base: int = 0o666) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def publish(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Rename a finished temp file into place with normal permissions (mkstemp makes
    0600 files, which would surprise users sharing their outputs)."""
    os.chmod(tmp, _umask_mode())
    os.replace(tmp, final)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only on success."""
    final = Path(final)
    with _parents(final.parent if str(final.parent) else Path(".")):
        try:
            fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        except OSError as exc:
            raise OutputError(f"{final}: cannot write in {final.parent} ({exc.strerror or exc})") from None
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            publish(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_owner(folder: Path, command: str) -> None:
    from dhm import __version__

    (folder / OWNER_FILE).write_text(json.dumps({"command": command, "dhm_version": __version__}) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str], *, replace: bool = False, command: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; move it into place only on success.

    With replace=True an existing `final` folder is swapped out after the new one is
    complete, so a failed run never destroys the previous result. `command` marks the
    folder as that command's output (call `check_output` first: it decides what may be
    replaced).
    """
    final = Path(final)
    with _parents(final.parent if str(final.parent) else Path(".")):
        if final.exists() and not replace:
            raise OutputError(f"{final}: already exists")
        if final.exists() and not final.is_dir():
            raise OutputError(f"{final}: is a file, not a folder")
        try:
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
        except OSError as exc:
            raise OutputError(f"{final}: cannot write in {final.parent} ({exc.strerror or exc})") from None
        os.chmod(tmp, _umask_mode(0o777))
        try:
            yield tmp
            if command:
                write_owner(tmp, command)
            if final.exists():
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


# ------------------------------------------------------------------ reading JSON


def _json_depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (Python's json recurses, and a
    100 000-deep document would overflow its stack)."""
    depth = best = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is out of range")
    return value


def parse_json(text: str, source: str, what: str = "JSON") -> Any:
    """Strict JSON: no NaN/Infinity, nesting at most MAX_JSON_DEPTH."""
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise SpecError(f"{source}: unreadable {what} (nested deeper than {MAX_JSON_DEPTH} levels)")
    try:
        return json.loads(text, parse_constant=_no_constants, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise SpecError(f"{source}: unreadable {what} ({str(exc).splitlines()[0]})") from None


def read_json(path: str | os.PathLike[str], what: str = "JSON") -> Any:
    """A JSON file, bounded (size, depth) and strict, or one clear line."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise SpecError(f"{path}: {size:,} bytes is too large for a {what} (at most {MAX_JSON_BYTES >> 20} MiB)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: unreadable {what} ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_json(text, str(path), what)


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def plain_file_name(name: Any) -> bool:
    """A file name with no path in it: what a manifest may list as an artefact."""
    return isinstance(name, str) and bool(_PLAIN_NAME.match(name)) and ".." not in name


def human_size(n_bytes: int) -> str:
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
