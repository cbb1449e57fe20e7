"""The Data Pipeline / EMR DynamoDB connector export, which the original Hippolyte wrote.

A folder ``<table>/<YYYY-MM-dd-HH-mm-ss>/`` holds extensionless data files (one item per
line, type keys in the connector's spelling: ``s``, ``n``, ``b``, ``sS``, ``nS``, ``bS``,
``m``, ``l``, ``nULL``, ``bOOL``), a ``manifest`` listing them by ``s3://`` URL, and
``_SUCCESS``, written last. As the connector's importer does, the manifest is read if
present, else every data file in the folder; type keys match in any case.
"""

from __future__ import annotations

import binascii
import posixpath
from typing import Any

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, HippolyteError
from hippolyte.core.model import Json
from hippolyte.formats.base import Source, SourceFile, check_file
from hippolyte.repo import manifest

KIND = "datapipeline"
MANIFEST = "manifest"
SUCCESS = "_SUCCESS"

# lower-cased type key -> DynamoDB's wire tag
_TAGS = {
    "s": "S",
    "n": "N",
    "b": "B",
    "ss": "SS",
    "ns": "NS",
    "bs": "BS",
    "m": "M",
    "l": "L",
    "null": "NULL",
    "bool": "BOOL",
}


def detect(storage: Storage, prefix: str, *, location: str) -> Source | None:
    """The export in folder ``prefix``, or None if the folder does not look like one (no
    ``manifest`` and no ``_SUCCESS`` next to data files). An export without ``_SUCCESS``
    did not finish: BackupCorrupt."""
    names = _files_in(storage, prefix)
    data = sorted(n for n in names if _is_data_name(n))
    if MANIFEST not in names and not (data and SUCCESS in names):
        return None
    if SUCCESS not in names:
        raise BackupCorrupt(
            f"{location} is incomplete (no {SUCCESS}): the export did not finish; refusing to "
            "use it"
        )
    if MANIFEST in names:
        data = _listed(storage, prefix, names, location=location)
    return Source(
        kind=KIND,
        storage=storage,
        location=location,
        files=[SourceFile(key=prefix + n) for n in data],
        to_wire=to_wire,
        description=None,
        extras=_export_time(storage, prefix),
    )


def check_folder(storage: Storage, prefix: str, *, location: str, verify: bool) -> tuple[bool, str]:
    """Whether folder ``prefix`` holds a committed export (``manifest`` and ``_SUCCESS``), and
    why; ``verify`` also reads every listed file, line by line."""
    try:
        source = detect(storage, prefix, location=location)
    except BackupCorrupt as exc:
        return False, str(exc)
    if source is None:
        return False, f"no export in {location}"
    if not storage.exists(prefix + MANIFEST):
        return False, f"{location} has no {MANIFEST}: not a complete export"
    counted = ""
    if verify:
        try:
            items = sum(check_file(source, f, schema=None).items for f in source.files)
        except HippolyteError as exc:
            return False, f"verify failed: {exc}"
        counted = f", {items:,} items"
    return True, f"EMR connector export, {len(source.files)} files{counted}"


def _files_in(storage: Storage, prefix: str) -> set[str]:
    """Names of the files directly in the folder (not in sub-folders)."""
    names = (k[len(prefix) :] for k in storage.list(prefix))
    return {n for n in names if "/" not in n}


def _is_data_name(name: str) -> bool:
    return "." not in name and not name.startswith("_") and name != MANIFEST


def _listed(storage: Storage, prefix: str, names: set[str], *, location: str) -> list[str]:
    where = f"{location.rstrip('/')}/{MANIFEST}"
    try:
        doc = orjson.loads(storage.get_bytes(prefix + MANIFEST))
    except orjson.JSONDecodeError as exc:
        raise BackupCorrupt(f"{where}: not valid JSON ({exc})") from exc
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise BackupCorrupt(f'{where}: not a Data Pipeline export manifest (no "entries" list)')
    found: list[str] = []
    for n, entry in enumerate(entries, 1):
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url.rstrip("/"):
            raise BackupCorrupt(f"{where}: entry {n} has no url")
        name = posixpath.basename(url.rstrip("/"))
        if name in names:
            found.append(name)
        elif entry.get("mandatory", True) is not False:
            raise BackupCorrupt(f"{where}: entry {n} ({url}) is missing from {location}")
    return found


def _export_time(storage: Storage, prefix: str) -> Json:
    """The folder's name is the export's start time when named YYYY-MM-dd-HH-mm-ss."""
    name = (prefix or storage.url).rstrip("/").rsplit("/", 1)[-1]
    if not manifest.is_backup_id(name):
        return {}
    try:
        at = manifest.parse_backup_id(name)
    except ValueError:  # e.g. 2024-13-40-...
        return {}
    return {"exportTime": manifest.iso(at)}


# --- the connector's item JSON -> DynamoDB's wire JSON -------------------------------------


def to_wire(line: bytes) -> bytes:
    """One line of the export -> the item in DynamoDB JSON. Raises ValueError naming the
    attribute on an unknown type key or a value of the wrong JSON type."""
    doc = orjson.loads(line)
    if not isinstance(doc, dict):
        raise ValueError(f"not a JSON object but {type(doc).__name__}")
    return orjson.dumps({name: _value(value, name, "") for name, value in doc.items()})


def _value(value: Any, name: str, at: str) -> Json:
    if not isinstance(value, dict) or len(value) != 1:
        shown = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"{_where(name, at)}: expected one type key, got {shown}")
    ((key, inner),) = value.items()
    tag = _TAGS.get(key.lower())
    if tag is None:
        raise ValueError(f"{_where(name, at)}: unknown type key {key!r}")
    if tag in ("S", "N"):
        _expect(isinstance(inner, str), name, at, tag, inner, "a string")
    elif tag == "B":
        _expect(isinstance(inner, str) and _is_base64(inner), name, at, tag, inner, "base64")
    elif tag in ("SS", "NS"):
        _expect(_strings(inner), name, at, tag, inner, "a list of strings")
    elif tag == "BS":
        ok = _strings(inner) and all(_is_base64(x) for x in inner)
        _expect(ok, name, at, tag, inner, "a list of base64 strings")
    elif tag == "M":
        _expect(isinstance(inner, dict), name, at, tag, inner, "an object")
        inner = {k: _value(v, name, f"{at}.{k}") for k, v in inner.items()}
    elif tag == "L":
        _expect(isinstance(inner, list), name, at, tag, inner, "a list")
        inner = [_value(v, name, f"{at}[{i}]") for i, v in enumerate(inner)]
    elif tag == "NULL":
        _expect(inner is True, name, at, tag, inner, "true")
    else:
        _expect(isinstance(inner, bool), name, at, tag, inner, "true or false")
    return {tag: inner}


def _expect(ok: bool, name: str, at: str, tag: str, inner: Any, wanted: str) -> None:
    if not ok:
        got = "null" if inner is None else type(inner).__name__
        raise ValueError(f"{_where(name, at)}: a {tag} value must be {wanted}, got {got}")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _is_base64(text: str) -> bool:
    try:
        binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return True


def _where(name: str, at: str) -> str:
    return f"attribute {name!r}" + (f" at {at}" if at else "")
