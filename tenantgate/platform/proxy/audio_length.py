"""How long the audio of a transcription or translation upload is, for answers that do not say (docs/pricing.md).

whisper-1 is sold by the second, but its ``text`` transcripts and its ``json`` and ``text`` translations carry
neither usage nor duration: such an event was stored unpriced, so under the default ``admit`` policy the request was
served for nothing. The upload says how long it is: a WAV file's header gives its sample rate and frame size, and
with the bytes of its data the exact length; every other container (mp3, mp4/m4a, ogg, webm, flac, ...) is
measured from its byte length at the most bytes a second that container commonly carries, so the seconds billed
are a lower bound, like the last cue of a subtitle answer. Either way the event is flagged ``estimated``: the
upstream did not report it.

The file part's first bytes are read from the head of the body the gateway already holds, by the same multipart
parser (and boundary) that read the form; its size is what the form reader counted as the upload streamed through.
"""

from __future__ import annotations

from collections.abc import Callable

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from tenantgate.platform.proxy.multipart import MultipartUpload
from tenantgate.tenants.limits.outputs import audio_seconds as most_seconds

_FILE_HEAD = 64 * 1024
"""The first bytes of the file part kept: a WAV header with its metadata chunks, a FLAC stream's first block."""
_FEED = 64 * 1024
# The most bytes a second each container commonly carries (its codec's highest usual bitrate), so that the seconds
# of an upload of that size are never more than it holds: MP3 at 320 kbit/s, Opus (ogg, webm) at 510 kbit/s, AAC
# (mp4, m4a) at 512 kbit/s. FLAC by its own stream info (the raw rate it compresses, at most 96 kHz 24-bit stereo's),
# else CD audio's raw rate.
_MP3_BYTES_PER_SECOND = 40_000
_OPUS_BYTES_PER_SECOND = 63_750
_AAC_BYTES_PER_SECOND = 64_000
_RAW_CD_BYTES_PER_SECOND = 176_400
"""44.1 kHz, 16-bit stereo: what an unrecognised file is measured at (the fewest seconds of any common audio)."""
_RAW_HI_RES_BYTES_PER_SECOND = 576_000
"""96 kHz, 24-bit stereo: the most a FLAC stream's info may claim to be measured by."""
_WAV_PCM_FORMATS = frozenset({1, 3, 6, 7, 0xFFFE})
"""WAV formats of plain samples (PCM, float, A-law, mu-law, extensible)."""
_UNKNOWN_DATA_SIZES = frozenset({0, 0xFFFFFFFF})
"""A streamed WAV's header does not know its data's size: the bytes that came are the data."""


def upload_seconds(upload: MultipartUpload) -> Callable[[], float | None]:
    """The seconds of audio in ``upload``'s file part, asked once the answer came (when the whole upload has gone
    through the form reader); None if the form has no file part."""
    head = file_part_head(upload.head, upload.form.boundary)
    form = upload.form

    def seconds() -> float | None:
        size = form.file_bytes
        return None if size <= 0 else audio_seconds(head or b"", size)

    return seconds


def file_part_head(body: bytes, boundary: bytes) -> bytes | None:
    """The first bytes (up to ``_FILE_HEAD``) of the first file part in ``body``, the start of a multipart form;
    None if none begins in it or it cannot be parsed."""
    reader = _FileHead()
    parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
    try:
        for start in range(0, len(body), _FEED):
            parser.write(body[start : start + _FEED])
            if len(reader.found) >= _FILE_HEAD or reader.done:
                break
    except MultipartParseError:
        return None
    return bytes(reader.found) if reader.in_file or reader.done else None


class _FileHead:
    def __init__(self) -> None:
        self.found = bytearray()
        self.in_file = False
        self.done = False
        self._field = b""
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        name = self._field.lower()
        self._headers[name] = self._headers.get(name, b"") + data[start:end]

    def _header_end(self) -> None:
        self._field = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self.in_file = b"filename" in options and not self.done

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file and len(self.found) < _FILE_HEAD:
            self.found += data[start : min(end, start + _FILE_HEAD - len(self.found))]

    def _part_end(self) -> None:
        if self.in_file:
            self.in_file, self.done = False, True


def audio_seconds(head: bytes, size: int) -> float:
    """The seconds of an audio file of ``size`` bytes beginning with ``head``: exact for WAV, else a lower bound;
    never more than admission held for an upload that size (``limits.outputs.audio_seconds``), whatever a header
    claims."""
    wav = _wav_seconds(head, size)
    seconds = wav if wav is not None else size / _bytes_per_second(head)
    return min(seconds, most_seconds(size))


def _wav_seconds(head: bytes, size: int) -> float | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, rate = 12, 0
    while offset + 8 <= len(head):
        chunk, length = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        if chunk == b"fmt " and offset + 24 <= len(head):
            fmt = head[offset + 8 : offset + 24]
            tag, channels = int.from_bytes(fmt[0:2], "little"), int.from_bytes(fmt[2:4], "little")
            sample_rate, byte_rate = int.from_bytes(fmt[4:8], "little"), int.from_bytes(fmt[8:12], "little")
            bits = int.from_bytes(fmt[14:16], "little")
            if tag in _WAV_PCM_FORMATS:
                # What a decoder plays: samples of the channels' width at the sample rate. The byte rate and block
                # align fields are not read: a header lying in them would shorten nothing a decoder hears.
                rate = sample_rate * channels * ((bits + 7) // 8)
            else:
                # Compressed audio in a WAV (MP3, ADPCM...) is decoded from its own frames, whatever the header's
                # byte rate says: never fewer bytes a second than compressed audio commonly carries.
                rate = min(byte_rate, _AAC_BYTES_PER_SECOND) or _AAC_BYTES_PER_SECOND
        elif chunk == b"data":
            if not rate:
                return None
            data = max(0, size - offset - 8)
            if length not in _UNKNOWN_DATA_SIZES:
                data = min(data, length)  # a decoder stops at the size the header says
            return data / rate
        offset += 8 + length + (length & 1)
    return None


def _bytes_per_second(head: bytes) -> int:
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return _MP3_BYTES_PER_SECOND
    if head[:4] == b"OggS" or head[:4] == b"\x1a\x45\xdf\xa3":  # ogg, webm/matroska
        return _OPUS_BYTES_PER_SECOND
    if head[4:8] == b"ftyp":  # mp4, m4a
        return _AAC_BYTES_PER_SECOND
    if head[:4] == b"fLaC" and len(head) >= 26 and head[4] & 0x7F == 0:  # STREAMINFO, the first metadata block
        info = int.from_bytes(head[18:26], "big")
        sample_rate, channels, bits = info >> 44, ((info >> 41) & 0x7) + 1, ((info >> 36) & 0x1F) + 1
        raw = min(sample_rate * channels * bits // 8, _RAW_HI_RES_BYTES_PER_SECOND)  # its frames may say otherwise
        return raw if raw > 0 else _RAW_CD_BYTES_PER_SECOND
    return _RAW_CD_BYTES_PER_SECOND
