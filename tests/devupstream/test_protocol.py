"""What every answer shares: authentication, unknown paths and methods, bad bodies, Azure paths, the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.devupstream.conftest import KEY
from tests.support.services import free_port

AUTH = {"Authorization": f"Bearer {KEY}"}


def test_wrong_and_missing_keys_are_401(upstream: str) -> None:
    client = openai.OpenAI(base_url=upstream + "/v1", api_key="sk-wrong", max_retries=0)
    with client, pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    assert caught.value.code == "invalid_api_key" and "sk-wrong" not in caught.value.message
    missing = httpx.get(upstream + "/v1/models")
    assert missing.status_code == 401 and "didn't provide an API key" in missing.json()["error"]["message"]


def test_unknown_path_is_an_openai_404(upstream: str) -> None:
    response = httpx.post(upstream + "/v1/assistants/upload", headers=AUTH, json={})
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/assistants/upload)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert response.headers["x-request-id"].startswith("req_")


def test_wrong_method_is_an_openai_405(upstream: str) -> None:
    response = httpx.get(upstream + "/v1/embeddings", headers=AUTH)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["message"] == "Invalid method for URL (GET /v1/embeddings)"
    on_chat = httpx.put(upstream + "/v1/chat/completions", headers=AUTH)  # GET lists the stored ones
    assert on_chat.status_code == 405 and on_chat.headers["allow"] == "POST, GET"
    on_response = httpx.put(upstream + "/v1/responses/resp_1", headers=AUTH)
    assert on_response.status_code == 405 and on_response.headers["allow"] == "GET, DELETE"


def test_bad_json_and_missing_model(client: openai.OpenAI, upstream: str) -> None:
    response = httpx.post(upstream + "/v1/chat/completions", headers=AUTH, content=b"{not json")
    assert response.status_code == 400 and "could not parse the JSON body" in response.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="", input="x")
    assert caught.value.message.endswith(" - you must provide a model parameter")


def test_azure_deployment_paths_and_api_key_header(upstream: str) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=upstream, api_key=KEY, api_version="2024-10-21", azure_deployment="my-4o", max_retries=0
    )
    with client:
        completion = client.chat.completions.create(
            model="ignored-for-deployments", messages=[{"role": "user", "content": "hi"}]
        )
    assert completion.choices[0].message.content
    # Without a model in the body, the deployment name stands in for it.
    response = httpx.post(
        upstream + "/openai/deployments/my-embedder/embeddings?api-version=2024-10-21",
        headers={"api-key": KEY},
        json={"input": "x"},
    )
    assert response.status_code == 200 and response.json()["model"] == "my-embedder"


def test_dev_upstream_cli_serves_the_sdk() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "dev-upstream", "--port", str(port), "--token-delay-ms", "1"],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "dev-upstream did not start"
                time.sleep(0.1)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="anything", max_retries=0) as client:
            with client.responses.stream(model="gpt-4o-mini", input="from the cli") as stream:
                final = stream.get_final_response()
            speech = client.audio.speech.create(model="tts-1", voice="alloy", input="hi")
        assert final.output_text.endswith("from the cli")
        assert speech.content.startswith(b"\xff\xfb")
    finally:
        process.terminate()
        process.wait(timeout=10)
