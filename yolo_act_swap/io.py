"""Files: the package's paths, YAML with file:line errors, atomic writes, checkpoint checks and safe loading globals.

Everything that reads or writes a file for more than one module lives here, once.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import logging
import os
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PACKAGE_ROOT = Path(__file__).resolve().parent
YAML_SUFFIXES = (".yaml", ".yml")


def configs_dir() -> Path:
    """The built-in ``configs/`` folder, in an editable checkout and in an installed wheel alike."""
    try:
        return Path(str(resources.files("yolo_act_swap.configs")))
    except ModuleNotFoundError:  # running from a source tree that is not installed
        return PACKAGE_ROOT.parent / "configs"


def find_config(name: str | os.PathLike, kind: str) -> Path | None:
    """A config file: ``name`` as a path from the current directory first, then the built-in ``configs/<kind>/``.

    The built-in lookup takes a bare name (with or without ``.yaml``/``.yml``) or the path the docs write from the
    repository root (``configs/acts/x.yaml``), so the same flag works for a pip user in any folder.

    Args:
        name: what the user passed (``--spec``, ``--cfg``, ``--data``).
        kind: ``acts``, ``models`` or ``data``.
    """
    text = str(name)
    try:
        p = Path(text)
        with contextlib.suppress(RuntimeError):  # ~nosuchuser: keep the path as written
            p = p.expanduser()
        if p.is_file():
            return p
        parts = Path(text).parts
        rel = parts[2:] if parts[:2] == ("configs", kind) else parts if len(parts) == 1 else ()
        if not rel:
            return None
        base = (configs_dir() / kind).joinpath(*rel)
        for q in (base, base.with_name(base.name + ".yaml"), base.with_name(base.name + ".yml")):
            if q.is_file():
                return q
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL byte: not a file
        return None
    return None


# --- YAML ---------------------------------------------------------------------------------------------------------


def yaml_error_line(e: yaml.YAMLError, name: str) -> str:
    """``name:line:col: malformed YAML: problem (context)`` for a PyYAML error, on one line."""
    mark = getattr(e, "problem_mark", None)
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else str(name)
    problem = " ".join(str(getattr(e, "problem", None) or e).split())
    context = getattr(e, "context", None)
    ctx = f" ({' '.join(str(context).split())})" if context else ""
    return f"{where}: malformed YAML: {problem}{ctx}"


def parse_yaml(text: str, name: str, error: type[Exception] = ValueError) -> Any:
    """``yaml.safe_load(text)``; a syntax error becomes ``error`` with ``name:line:col`` and the fix."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{yaml_error_line(e, name)}; fix the YAML syntax there") from None


def read_yaml(path: str | os.PathLike, error: type[Exception] = ValueError, what: str = "YAML file") -> Any:
    """Read and ``yaml.safe_load`` a file; a missing/unreadable file or bad syntax becomes one-line ``error``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}; check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} {path}: {type(e).__name__}: {str(e)[:120]}") from None
    return parse_yaml(text, str(path), error)


# --- atomic writes ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the result the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file and an atomic rename."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


# --- checkpoints and run files -------------------------------------------------------------------------------------


def checkpoint_complete(path: str | os.PathLike) -> bool:
    """True when a ``torch.save`` zip archive is whole (ultralytics writes ``last.pt`` in place, not atomically)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def read_results_csv(path: str | os.PathLike) -> list[dict]:
    """Ultralytics' per-epoch ``results.csv`` as a list of dicts of floats (one per epoch; a resumed epoch once)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows: dict[int, dict] = {}
    for row in csv.DictReader(_io.StringIO(text)):
        try:
            vals = {k.strip(): float(v) for k, v in row.items() if k and v not in (None, "")}
        except ValueError:
            continue
        if "epoch" in vals:
            rows[int(vals["epoch"])] = vals  # a resume may repeat an epoch: the later row wins
    return [rows[k] for k in sorted(rows)]


# --- quiet third-party output -------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet(enabled: bool = True, stdout: bool = True):
    """Silence logging (and stdout, which upstream code prints model tables to) while the block runs."""
    if not enabled:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        if stdout:
            with contextlib.redirect_stdout(_io.StringIO()):
                yield
        else:
            yield
    finally:
        logging.disable(previous)
