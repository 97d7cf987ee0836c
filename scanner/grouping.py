"""Group keys for `--group-by`: crawl snapshot (month) or registered domain.

Snapshot keys are the UTC month of a record's date ("2024-05"). Domain keys are
the registered domain of a record's URL ("bbc.co.uk" for www.bbc.co.uk), found
with the public suffix list that the `publicsuffixlist` package ships, so no
list is downloaded at run time. IP addresses and hosts without a registered
domain keep their full host name. Records without a date or URL go to the
group "unknown".
"""

import ipaddress
import re
import urllib.parse
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from publicsuffixlist import PublicSuffixList

from scanner.config import GroupBy

UNKNOWN = "unknown"
# Letters of any script, digits, hyphens, underscores and dots; IPv6 hosts come without brackets.
_HOST = re.compile(r"[\w.-]+|[0-9a-f:.]+")

_suffixes = PublicSuffixList()


def group_codes(batch: pa.RecordBatch, group_by: GroupBy) -> tuple[np.ndarray, list[str]] | None:
    """Return (code per record, group name per code) for a record batch, or None for "none"."""
    if group_by == "none":
        return None
    if group_by == "snapshot":
        keys = _snapshot_keys(batch.column("date"))
    else:
        keys = _domain_keys(batch.column("url"))
    encoded = pc.dictionary_encode(keys)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _snapshot_keys(dates: pa.Array) -> pa.Array:
    months = pc.strftime(dates, format="%Y-%m", locale="C")
    return pc.fill_null(months, UNKNOWN)


def _domain_keys(urls: pa.Array) -> pa.Array:
    return pa.array([UNKNOWN if url is None else registered_domain(url) for url in urls.to_pylist()])


@lru_cache(maxsize=65536)
def _domain_of_host(host: str) -> str:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    return _suffixes.privatesuffix(host) or host


def registered_domain(url: str) -> str:
    """Return the registered domain of `url`, its host when it has none, or "unknown"."""
    text = url.strip().strip("<>")
    if "//" not in text:
        text = "//" + text
    try:
        host = urllib.parse.urlsplit(text).hostname
    except ValueError:
        return UNKNOWN
    host = (host or "").rstrip(".").lower()
    if not host or not _HOST.fullmatch(host):
        return UNKNOWN
    return _domain_of_host(host)
