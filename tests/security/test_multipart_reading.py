"""Threat T4, parser differentials in uploads: the gateway and the upstream read the same multipart form.

A key allowed only ``whisper-1`` must never get another model served, however the form repeats or disguises its
``model`` field, whether the upload is held (small) or streamed through (large).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser, parse_options_header

from tests.support.gateway import Gateway
from tests.support.recording import RecordingUpstream, serve_recording

BOUNDARY = "tgboundary42"
DISPOSITIONS = [
    'form-data; name="model"',
    "form-data; name=model",
    'form-data; NAME="model"',
    'form-data; name="model"; name="x"',
    "form-data; name*=UTF-8''model; name=\"x\"",
    'form-data; name="x"; name="model"',
    'form-data;name="model"',
]


def form(parts: list[tuple[str, bytes]]) -> bytes:
    out = b""
    for disposition, value in parts:
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def models_in(body: bytes) -> list[str] | None:
    """The ``model`` values a standard parser reads from a complete form; None if the body is incomplete."""
    found: list[str] = []
    state: dict[str, Any] = {"headers": b"", "value": b"", "done": False}

    def header_value(data: bytes, start: int, end: int) -> None:
        state["headers"] += data[start:end]

    def part_data(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def part_end() -> None:
        _, options = parse_options_header(state["headers"])
        if options.get(b"name") == b"model":
            found.append(state["value"].decode())
        state["headers"], state["value"] = b"", b""

    callbacks = {
        "on_header_value": header_value,
        "on_part_data": part_data,
        "on_part_end": part_end,
        "on_end": lambda: state.update(done=True),
    }
    boundary = body.split(b"\r\n", 1)[0][2:]  # the first line is --<boundary>, whoever wrote the form
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    parser.write(body)
    parser.finalize()
    return found if state["done"] else None


@pytest.fixture
def setup(gateway_factory: Callable[..., Gateway], sqlite_url: str) -> Iterator[tuple[Gateway, RecordingUpstream, str]]:
    recorder = RecordingUpstream()
    with serve_recording(recorder):
        gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=recorder.base_url)
        key = gateway.new_key("audio", allowed_models=["whisper-1"])["key"]
        yield gateway, recorder, key


field_parts = st.lists(
    st.tuples(st.sampled_from(DISPOSITIONS), st.sampled_from([b"whisper-1", b"gpt-4o-transcribe", b""])),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=field_parts, large=st.booleans(), file_first=st.booleans())
def test_the_upstream_never_serves_a_model_the_key_may_not_use(
    setup: tuple[Gateway, RecordingUpstream, str], parts: list[tuple[str, bytes]], large: bool, file_first: bool
) -> None:
    gateway, recorder, key = setup
    audio = ('form-data; name="file"; filename="a.wav"', b"\0" * (1_200_000 if large else 100))
    body = form([audio, *parts] if file_first else [*parts, audio])
    response = gateway.http.post(
        gateway.base_url + "/audio/transcriptions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code in (200, 400, 404), response.text
    for seen in recorder.seen:
        served = models_in(seen.body)
        assert served is None or served == ["whisper-1"], (parts, served)
    if response.status_code == 200:
        assert len(recorder.seen) == 1 and models_in(recorder.seen[0].body) == ["whisper-1"]
    recorder.clear()


def test_a_second_model_field_is_refused_in_openais_shape(setup: tuple[Gateway, RecordingUpstream, str]) -> None:
    gateway, recorder, key = setup
    body = form([('form-data; name="model"', b"whisper-1"), ('form-data; name="model"', b"gpt-4o-transcribe")])
    response = gateway.http.post(
        gateway.base_url + "/audio/transcriptions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "The form field 'model' appears more than once; send it once.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "invalid_multipart",
    }
    assert recorder.seen == []
    # Array fields may repeat, and the SDK's own uploads pass.
    client = gateway.client(key)
    client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", io.BytesIO(b"RIFF")),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert models_in(recorder.seen[-1].body) == ["whisper-1"]


@pytest.fixture
def image_setup(
    gateway_factory: Callable[..., Gateway], sqlite_url: str
) -> Iterator[tuple[Gateway, RecordingUpstream, str]]:
    recorder = RecordingUpstream()
    with serve_recording(recorder):
        gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=recorder.base_url)
        key = gateway.new_key("images", allowed_models=["dall-e-2"])["key"]
        yield gateway, recorder, key


image_field_parts = st.lists(
    st.tuples(
        st.sampled_from([*DISPOSITIONS, 'form-data; name="model"; filename="m.txt"', 'form-data; name="prompt"']),
        st.sampled_from([b"dall-e-2", b"gpt-image-1", b""]),
    ),
    max_size=3,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=image_field_parts,
    route=st.sampled_from(["/images/edits", "/images/variations"]),
    large=st.booleans(),
    file_first=st.booleans(),
)
def test_image_uploads_are_served_only_the_model_the_gateway_checked(
    image_setup: tuple[Gateway, RecordingUpstream, str],
    parts: list[tuple[str, bytes]],
    route: str,
    large: bool,
    file_first: bool,
) -> None:
    """Edits and variations default to dall-e-2 when no model is named: the gateway then sends that model itself,
    so the upstream never falls back to a default of its own (or reads a disguised ``model`` part)."""
    gateway, recorder, key = image_setup
    image = ('form-data; name="image"; filename="a.png"', b"\x89PNG" + b"\0" * (1_200_000 if large else 100))
    body = form([image, *parts] if file_first else [*parts, image])
    response = gateway.http.post(
        gateway.base_url + route,
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code in (200, 400, 404), response.text
    assert response.status_code != 500
    for seen in recorder.seen:
        served = models_in(seen.body)
        assert served is None or served == ["dall-e-2"], (parts, served)
    if response.status_code == 200:
        assert len(recorder.seen) == 1 and models_in(recorder.seen[0].body) == ["dall-e-2"]
    recorder.clear()


def _email_models(content_type: str, body: bytes) -> list[str]:
    """The ``model`` values the standard library's MIME parser (RFC 2046: a preamble allowed) reads from a body sent
    with ``content_type`` - a reading other than the gateway's, as an upstream may have."""
    import email.parser
    import email.policy

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        return []
    return [
        part.get_payload(decode=True).decode()
        for part in message.iter_parts()  # type: ignore[attr-defined]
        if part.get_param("name", header="content-disposition") == "model"
    ]


def _form_with(boundary: str, model: bytes) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n'.encode()
        + model
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n'
        f"--{boundary}--\r\n".encode()
    )


content_type_params = st.lists(
    st.sampled_from(
        ["boundary=AAA", "boundary=BBB", 'boundary="BBB"', "BOUNDARY=BBB", "xboundary=AAA", 'charset="boundary=AAA"',
         "charset=utf-8", "boundary=AAA BBB", 'boundary="AAA"x', "boundary="]
    ),
    min_size=0,
    max_size=3,
)  # fmt: skip


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=content_type_params, twice=st.booleans(), separator=st.sampled_from(["; ", ";", " ; "]))
def test_the_gateway_and_any_parser_read_the_same_boundary(
    setup: tuple[Gateway, RecordingUpstream, str], params: list[str], twice: bool, separator: str
) -> None:
    """The audit's differential: a body that is one form under boundary AAA (whisper-1) and, read from its middle,
    another under BBB (gpt-4o-transcribe). Whatever Content-Type names them, the upstream is served whisper-1 or
    nothing."""
    gateway, recorder, key = setup
    body = _form_with("AAA", b"whisper-1") + _form_with("BBB", b"gpt-4o-transcribe")
    content_type = separator.join(["multipart/form-data", *params])
    headers = [("Authorization", f"Bearer {key}"), ("Content-Type", content_type)]
    if twice:
        headers.append(("Content-Type", "multipart/form-data; boundary=BBB"))
    response = gateway.http.post(gateway.base_url + "/audio/transcriptions", content=body, headers=headers)
    assert response.status_code in (200, 400), response.text
    for seen in recorder.seen:
        forwarded = [v for k, v in seen.headers if k == "content-type"]
        assert len(forwarded) == 1
        assert _email_models(forwarded[0], seen.body) in ([], ["whisper-1"]), (content_type, forwarded)
    if response.status_code == 400:
        assert recorder.seen == []
        assert response.json()["error"]["type"] == "invalid_request_error"
    recorder.clear()


def test_headers_a_front_would_act_on_are_not_forwarded(setup: tuple[Gateway, RecordingUpstream, str]) -> None:
    gateway, recorder, key = setup
    rewrites = {"X-HTTP-Method-Override": "DELETE", "X-Original-URL": "/v1/models/ft:victim", "X-Rewrite-URL": "/x",
                "X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/v1/files", "Forwarded": "host=evil",
                "X-Envoy-Original-Path": "/v1/files", "Content-Encoding": "identity"}  # fmt: skip
    gateway.client(key).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", io.BytesIO(b"RIFF")), extra_headers=rewrites
    )
    sent = {name for name, _ in recorder.seen[-1].headers}
    assert sent.isdisjoint(name.lower() for name in rewrites), sent
    assert "x-stainless-lang" in sent  # the SDK's own headers still pass
