"""Turn an archived HTTP response or resource body into document text.

The steps, in order:
1. split the HTTP head from the body (CRLF or bare LF line ends);
2. undo `Transfer-Encoding: chunked`;
3. undo `Content-Encoding` gzip or deflate when the body really is compressed;
4. pick the charset and decode;
5. for HTML, extract the visible text with Resiliparse's `extract_plain_text`.

Charset choice: the HTTP Content-Type charset, else a `<meta charset>` or
http-equiv tag in the first 4 KiB, else `detect_encoding` (uchardet). Labels
are mapped to their WHATWG names, so "iso-8859-1" decodes as windows-1252 and
"gb2312" as GBK. When the chosen charset fails on the bytes, the detected one
is tried. Only when both fail are invalid bytes replaced with U+FFFD, and the
document is counted in `counters["decode_replacements"]`.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import detect_encoding, map_encoding_to_html5

from scanner.formats.report import ReadReport

HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+xhtml")
PLAIN_TYPES = ("text/plain",)
# Media types that do not identify the content, so the body is checked for HTML.
_UNKNOWN_TYPES = ("", "application/octet-stream", "unknown/unknown", "www/unknown")

_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)?\s+(\d{3})")
_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""",
    re.IGNORECASE,
)
_CHARSET_PARAMETER = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class HttpResponse:
    """Status code, headers (names in lower case, repeats kept in order) and raw body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """Return the first value of header `name` (case-insensitive), or None."""
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None


def parse_http_response(block: bytes) -> HttpResponse | None:
    """Split an HTTP response into status, headers and body, or return None if it is not one."""
    match = _STATUS_LINE.match(block)
    if match is None:
        return None

    crlf_end = block.find(b"\r\n\r\n")
    lf_end = block.find(b"\n\n")
    candidates = [(crlf_end, 4), (lf_end, 2)]
    found = [(position, length) for position, length in candidates if position >= 0]
    if not found:
        head, body = block, b""
    else:
        position, length = min(found)
        head, body = block[:position], block[position + length :]

    headers = []
    for raw_line in head.split(b"\n")[1:]:
        name, separator, value = raw_line.partition(b":")
        if not separator:
            continue
        headers.append((name.strip().decode("latin-1").lower(), value.strip().decode("latin-1")))
    return HttpResponse(status=int(match.group(1)), headers=tuple(headers), body=body)


def decode_transfer(response: HttpResponse, report: ReadReport) -> bytes:
    """Return the body with chunked transfer coding and gzip/deflate content coding undone."""
    body = response.body
    transfer = (response.header("transfer-encoding") or "").lower()
    if "chunked" in transfer:
        dechunked = dechunk(body)
        if dechunked is None:
            # Archivers often store the body already dechunked but keep the header.
            report.count("chunked_bodies_not_chunked")
        else:
            body = dechunked

    encoding = (response.header("content-encoding") or "").lower().strip()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflated = _inflate(body)
        if inflated is not None:
            body = inflated
        elif body.startswith(b"\x1f\x8b"):
            report.count("undecodable_content_encoding")
    elif encoding not in ("", "identity", "none"):
        report.count("undecodable_content_encoding")
    return body


def dechunk(body: bytes) -> bytes | None:
    """Undo HTTP/1.1 chunked transfer coding, or return None when `body` is not chunked.

    A body cut off inside a chunk returns the bytes read so far.
    """
    pieces = []
    position = 0
    while True:
        line_end = body.find(b"\n", position)
        if line_end < 0:
            return None if not pieces else b"".join(pieces)
        size_text = body[position:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return None if not pieces else b"".join(pieces)
        if size == 0:
            return b"".join(pieces)
        start = line_end + 1
        pieces.append(body[start : start + size])
        position = start + size
        # Each chunk ends with CRLF (or a bare LF in sloppy archives).
        if body.startswith(b"\r\n", position):
            position += 2
        elif body.startswith(b"\n", position):
            position += 1
        if position >= len(body):
            return b"".join(pieces)


def _inflate(body: bytes) -> bytes | None:
    """Decompress a gzip, zlib or raw deflate body, or return None when it is not compressed that way."""
    # wbits 47 accepts a gzip or a zlib header, -15 a raw deflate stream.
    for wbits in (47, -15):
        decompressor = zlib.decompressobj(wbits)
        try:
            inflated = decompressor.decompress(body)
            inflated += decompressor.flush()
        except zlib.error:
            continue
        if inflated or not body:
            return inflated
    return None


def media_type(content_type: str | None) -> str:
    """Return the lower-case media type of a Content-Type value ("" when absent)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def declared_charset(content_type: str | None) -> str | None:
    """Return the charset parameter of a Content-Type value, or None."""
    if not content_type:
        return None
    match = _CHARSET_PARAMETER.search(content_type)
    return match.group(1) if match else None


def looks_like_html(body: bytes) -> bool:
    """Return True when a body without a usable Content-Type starts like an HTML page."""
    return _HTML_START.match(body[:4096]) is not None


def decode_body(body: bytes, charset: str | None, is_html: bool, report: ReadReport) -> str:
    """Decode `body` into text, choosing the charset as the module docstring describes."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
        charset = "utf-8"
    if charset is None and is_html:
        match = _META_CHARSET.search(body[:4096])
        if match:
            charset = match.group(1).decode("ascii", errors="replace")

    detected = None
    if charset is None or map_encoding_to_html5(charset, fallback_utf8=False) is None:
        detected = detect_encoding(body)
        charset = detected
    encoding = map_encoding_to_html5(charset)

    try:
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        pass

    if detected is None:
        detected = detect_encoding(body)
    if detected != encoding:
        try:
            text = body.decode(detected)
        except (UnicodeDecodeError, LookupError):
            pass
        else:
            report.count("charset_mismatches")
            return text

    report.count("decode_replacements")
    return body.decode(encoding, errors="replace")


def html_to_text(html: str) -> str:
    """Extract the visible text of an HTML page, keeping block-level line breaks.

    Resiliparse 2.0 turns character references to surrogates ("&#xD800;")
    into U+FFFD, so the result is always valid for Arrow.
    """
    return extract_plain_text(html, preserve_formatting=True, main_content=False)


def response_text(block: bytes, report: ReadReport, location: str) -> str | None:
    """Return the document text of an archived HTTP response, or None when it is not a document.

    Responses other than 2xx are counted in `counters["non_success_responses"]`,
    because their bodies are error pages and redirect stubs, not content.
    Bodies that are not HTML or plain text are counted in
    `counters["non_text_payloads"]`. A block without an HTTP status line is
    skipped with reason "invalid_http_response".
    """
    response = parse_http_response(block)
    if response is None:
        report.skip("invalid_http_response", location, f"no HTTP status line: {block[:60]!r}")
        return None
    if not 200 <= response.status < 300:
        report.count("non_success_responses")
        return None
    body = decode_transfer(response, report)
    return content_text(body, response.header("content-type"), report)


def content_text(body: bytes, content_type: str | None, report: ReadReport) -> str | None:
    """Return the text of an HTML or plain-text body, or None (counted) for other media types."""
    mime = media_type(content_type)
    charset = declared_charset(content_type)
    if mime in HTML_TYPES or (mime in _UNKNOWN_TYPES and looks_like_html(body)):
        return html_to_text(decode_body(body, charset, is_html=True, report=report))
    if mime in PLAIN_TYPES:
        return decode_body(body, charset, is_html=False, report=report)
    report.count("non_text_payloads")
    return None
