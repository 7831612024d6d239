"""A prepared dataset's content fingerprint: a SHA-256 over what its tables hold, so that runs can
say which data they were trained on and analysis can refuse to compare runs of different data.

The hash covers every column of sequences.parquet and items.parquet (in name order) by value: the
same ids, sequences and features give the same fingerprint whatever the Parquet encoding, the
integer widths or the chunking; the dataset's name, its path and its source files do not enter it.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from glintru.data.dataset import PreparedDataset

FINGERPRINT_KEY = "fingerprint"  # in meta.json
# Changes whenever the hashed form changes, so that an old and a new fingerprint never look alike.
_FORMAT = b"glintru-dataset-fingerprint-1"


class FingerprintError(ValueError):
    """The tables no longer hash to the fingerprint recorded when the dataset was prepared."""


def short(fingerprint: str | None) -> str:
    """The fingerprint as tables and messages show it: its first 8 hex digits."""
    return "unknown" if fingerprint is None else fingerprint[:8]


def table_fingerprint(sequences: pa.Table, items: pa.Table) -> str:
    """The hex SHA-256 of the two tables' contents."""
    h = hashlib.sha256(_FORMAT)
    for table_name, table in (("sequences", sequences), ("items", items)):
        for column in sorted(table.column_names):
            h.update(f"\0{table_name}.{column}\0".encode())
            _feed(h, table.column(column).combine_chunks())
    return h.hexdigest()


def _feed(h: Any, arr: pa.Array) -> None:
    """Hash one array by value: a kind tag, its length and null mask, then its values."""
    t = arr.type
    h.update(f"{len(arr)}:{arr.null_count}:".encode())
    if arr.null_count:
        h.update(np.asarray(arr.is_null(), dtype=np.uint8).tobytes())
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        h.update(b"int")
        h.update(np.asarray(pc.fill_null(arr.cast(pa.int64()), 0)).astype("<i8").tobytes())
    elif pa.types.is_floating(t):
        h.update(b"float")
        h.update(np.asarray(pc.fill_null(arr.cast(pa.float64()), 0.0)).astype("<f8").tobytes())
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        h.update(b"bytes")
        binary = arr.cast(pa.large_binary())
        _, offsets_buf, data_buf = binary.buffers()
        offsets = np.frombuffer(offsets_buf, dtype="<i8")[binary.offset : binary.offset + len(binary) + 1]
        h.update((offsets - offsets[0]).tobytes())
        if data_buf is not None:
            h.update(memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])])
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        h.update(b"list")
        h.update(np.asarray(pc.fill_null(pc.list_value_length(arr), 0)).astype("<i8").tobytes())
        _feed(h, arr.flatten())
    else:  # no prepared column has another type; hashed by its Python values all the same
        h.update(f"other:{t}".encode())
        h.update(json.dumps(arr.to_pylist(), default=str).encode())


def verify(ds: PreparedDataset) -> str:
    """Hash the tables again; FingerprintError unless that gives the fingerprint meta.json holds.
    Returns the fingerprint."""
    computed = table_fingerprint(ds.sequences, ds.items)
    recorded = ds.meta.get(FINGERPRINT_KEY)
    if recorded is not None and recorded != computed:
        where = ds.path if ds.path is not None else ds.name
        raise FingerprintError(
            f"{where}: the tables hash to fingerprint {short(computed)}, but meta.json records "
            f"{short(recorded)}; the dataset was changed since it was prepared; prepare it again"
        )
    return computed
