"""The REST API: happy paths (glossaries too), every limit and error as JSON, micro-batching, fuzzed input that never
gives a 500, and the guards: body limit (chunked too, on a real server), hardening headers, Host check, CORS and API
key."""

from __future__ import annotations

import http.client
import json
import re
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import served
from rnnmt.glossary import Glossary
from rnnmt.serving import CSP, STATIC, ServeSettings, create_app, host_name
from rnnmt.translator import Translator

LIMITS = ServeSettings(max_chars=200, max_texts=4, max_beam=4, queue_size=8, timeout_s=20.0, max_glossary_terms=3,
                       max_term_chars=20)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HARDENING = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "content-security-policy": CSP}


def local_client(app: FastAPI, **kwargs: Any) -> TestClient:
    """A TestClient that calls itself localhost (its own name, testserver, is not an allowed host)."""
    return TestClient(app, base_url="http://localhost", **kwargs)


@pytest.fixture(scope="module")
def translator(tiny_model) -> Translator:
    return Translator.load(tiny_model, "cpu")


@pytest.fixture(scope="module")
def client(translator) -> Iterator[TestClient]:
    with local_client(create_app(translator, LIMITS)) as client:
        yield client


@pytest.fixture(scope="module")
def server(translator) -> Iterator[tuple[str, int]]:
    """The app with ``LIMITS`` served by uvicorn on a free loopback port, in a thread; yields (host, port)."""
    with served(create_app(translator, LIMITS)) as address:
        yield address


class Gate:
    """Stands in for ``translate_full``: records each call's texts and blocks until opened."""

    def __init__(self, translator: Translator):
        self.real, self.calls, self.glossaries = translator.translate_full, [], []
        self.entered, self.opened = threading.Event(), threading.Event()

    def __call__(self, texts: list[str], *args: Any) -> list:
        self.calls.append(list(texts))
        self.glossaries.append(args[2] if len(args) > 2 else None)
        self.entered.set()
        self.opened.wait(10)
        return self.real(texts, *args)


def post_in_thread(client: TestClient, body: dict, answers: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(client.post("/translate", json=body)))
    thread.start()
    return thread


def wait_for_pending(client: TestClient, count: int) -> None:
    deadline = time.monotonic() + 10
    while client.get("/health").json()["pending"] < count:
        assert time.monotonic() < deadline, f"never saw {count} pending requests"
        time.sleep(0.01)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert error["message"] and "Traceback" not in response.text
    return error


def test_translate_one_text(client, translator):
    body = client.post("/translate", json={"text": "How are you?"}).json()
    (t,) = body["translations"]
    assert t["text"] == translator.translate("How are you?") and t["source"] == "How are you?"
    assert t["src_tokens"][-1] == t["tgt_tokens"][-1] == "</s>"
    assert len(t["attention"]) == len(t["tgt_tokens"])
    assert all(len(row) == len(t["src_tokens"]) and abs(sum(row) - 1) < 1e-2 for row in t["attention"])
    assert body["beam_size"] == 1 and body["timings"]["batch_texts"] == 1
    assert body["timings"]["total_ms"] >= body["timings"]["model_ms"] > 0


def test_translate_many_texts_keeps_their_order(client, translator):
    texts = ["The plan has changed.", "", "Don't be late.", "How are you?"]
    body = client.post("/translate", json={"texts": texts}).json()
    assert [t["text"] for t in body["translations"]] == translator.translate(texts)


def test_beam_size_and_n_best(client, translator):
    body = client.post("/translate", json={"text": "Don't be late.", "beam_size": 3, "n_best": 2}).json()
    (expected,) = translator.translate_full(["Don't be late."], 3, 2)
    (t,) = body["translations"]
    assert body["beam_size"] == 3 and t["text"] == expected.text
    assert [(a["text"], pytest.approx(a["score"])) for a in t["n_best"]] == expected.n_best


def test_a_glossary_forces_its_terms_into_the_texts_that_hold_them(client, translator):
    texts = ["Flowers bloom in spring.", "Don't be late."]
    glossary = [{"source": "Spring", "target": "बसंत"}]
    body = client.post("/translate", json={"texts": texts, "beam_size": 4, "n_best": 2, "glossary": glossary}).json()
    expected = translator.translate_full(texts, 4, 2, Glossary.of({"Spring": "बसंत"}))
    forced, free = body["translations"]
    assert forced["text"] == expected[0].text and forced["text"].count("बसंत") == 1
    assert all("बसंत" in a["text"] for a in forced["n_best"])
    assert forced["terms"] == glossary and forced["warnings"] == []
    assert free["text"] == translator.translate("Don't be late.", 4) and free["terms"] == []
    body = client.post("/translate", json={"text": "Flowers bloom in spring.", "glossary": [
        {"source": "spring", "target": "春"}]}).json()
    assert body["translations"][0]["warnings"] == [
        "glossary term 'spring': the model's Hindi vocabulary cannot write '春' (it has <unk>); not forced"]


def test_requests_share_a_model_call_only_with_an_equal_glossary(translator, monkeypatch):
    gate = Gate(translator)
    monkeypatch.setattr(translator, "translate_full", gate)
    answers: list = []
    spring = [{"source": "spring", "target": "बसंत"}]
    with local_client(create_app(translator)) as client:
        threads = [post_in_thread(client, {"text": "How are you?"}, answers)]
        assert gate.entered.wait(10)  # the model is busy with the first request while three more arrive
        threads += [post_in_thread(client, {"text": text, "glossary": glossary}, answers) for text, glossary in (
            ("Flowers bloom in spring.", spring), ("Spring is here.", spring), ("Hello.", None))]
        wait_for_pending(client, 4)
        gate.opened.set()
        for thread in threads:
            thread.join(10)
    calls = sorted(zip(map(len, gate.calls), map(str, gate.glossaries), strict=True))
    assert calls == [(1, "None"), (1, "None"), (2, str(Glossary.of({"spring": "बसंत"})))]
    assert all(answer.status_code == 200 for answer in answers) and len(answers) == 4


def test_health_and_model_metadata(client):
    assert client.get("/health").json() == {"status": "ok", "pending": 0, "queue_size": 8}
    info = client.get("/model").json()
    assert info["languages"] == {"source": "en", "target": "hi"}
    assert (info["cell"], info["attention"], info["name"]) == ("gru", "luong_general", "tiny")
    assert info["size"]["parameters"] > 0 and info["size"]["hidden_size"] == 64
    assert info["training_data"] == ["bundled:train"] and "dev_chrf" in info["scores"]
    assert info["limits"]["max_chars"] == 200


def test_the_schema_page_and_static_files(client):
    assert "/translate" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="source"' in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_the_page_fetches_nothing_from_elsewhere():
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


def test_no_docs_page_loads_swagger_from_a_cdn(client):
    """/docs and /redoc would load Swagger UI and ReDoc from a CDN: they are off, /openapi.json stays."""
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert_error(client.get(path), 404, "not_found")


def test_the_page_needs_nothing_its_csp_forbids():
    """No inline script, event handler or style attribute: the CSP allows only the page's own files."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/app.js" defer>']
    assert not re.search(r"\son\w+\s*=|\sstyle\s*=|<style\b|javascript:", page, re.IGNORECASE)
    assert re.findall(r'(?:href|src)="([^"]*)"', page) == ["data:,", "/static/style.css", "/static/app.js"]
    assert "default-src 'self'" in CSP and "img-src 'self' data:" in CSP and "frame-ancestors 'none'" in CSP


def test_explain_gives_the_step_by_step_record(client, translator):
    record = client.post("/explain", json={"text": "How are you?"}).json()
    assert record["translation"] == translator.translate("How are you?", beam_size=1)
    assert record["decoder"][0]["top"] and record["decoder"][-1]["chosen"]["piece"] == "</s>"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"text": "a" * 201}, 413, "text_too_long"),
    ({"texts": ["ok", "b" * 201]}, 413, "text_too_long"),
    ({"texts": ["a"] * 5}, 413, "too_many_texts"),
    ({"text": "a", "beam_size": 5}, 422, "beam_too_large"),
    ({"text": "a", "beam_size": 2, "n_best": 3}, 422, "n_best_too_large"),
    ({"text": "a", "beam_size": 0}, 422, "invalid_request"),
    ({"text": "a", "texts": ["b"]}, 422, "invalid_request"),
    ({}, 422, "invalid_request"),
    ({"texts": []}, 422, "invalid_request"),
    ({"text": ["a"]}, 422, "invalid_request"),
    ({"text": 7}, 422, "invalid_request"),
    ({"texts": "a"}, 422, "invalid_request"),
    ({"text": "a", "beam_size": "3"}, 422, "invalid_request"),
    ({"text": "a", "beam_size": True}, 422, "invalid_request"),
    ({"text": "a", "colour": "red"}, 422, "invalid_request"),
    ({"text": "a", "glossary": [{"source": "a", "target": "b"}] * 4}, 413, "too_many_terms"),
    ({"text": "a", "glossary": [{"source": "a", "target": "ब" * 21}]}, 413, "term_too_long"),
    ({"text": "a", "glossary": [{"source": " ", "target": "b"}]}, 422, "invalid_glossary"),
    ({"text": "a", "glossary": [{"source": "a", "target": "b"}, {"source": "A", "target": "c"}]}, 422,
     "invalid_glossary"),
    ({"text": "a", "glossary": [{"source": "a"}]}, 422, "invalid_request"),
    ({"text": "a", "glossary": [{"source": "a", "target": "b", "note": "c"}]}, 422, "invalid_request"),
    ({"text": "a", "glossary": {"a": "b"}}, 422, "invalid_request"),
])
def test_every_limit_and_bad_field_is_a_json_error(client, body, status, code):
    assert_error(client.post("/translate", json=body), status, code)


def test_errors_name_the_field_and_the_limit(client):
    assert "text 1 has 201 characters; the limit is 200" in client.post(
        "/translate", json={"texts": ["ok", "b" * 201]}).json()["error"]["message"]
    terms = [{"source": "a", "target": "b"}, {"source": "c", "target": "d" * 21}]
    assert client.post("/translate", json={"text": "a", "glossary": terms}).json()["error"]["message"] == (
        "glossary[1].target has 21 characters; the limit is 20")
    terms = [{"source": "a", "target": "b"}, {"source": "a", "target": " "}]
    assert client.post("/translate", json={"text": "a", "glossary": terms}).json()["error"]["message"] == (
        "glossary[1]: the Hindi side is empty")
    error = assert_error(client.post("/translate", json={"text": 7}), 422, "invalid_request")
    assert error["details"] == [{"field": "text", "message": "Input should be a valid string"}]


@pytest.mark.parametrize(("content", "headers"), [
    (b"", {"content-type": "application/json"}),
    (b"{not json", {"content-type": "application/json"}),
    (b'{"text": "\\ud800"}', {"content-type": "application/json"}),
    (b'{"text": "a", "glossary": [{"source": "\\ud800", "target": "b"}]}', {"content-type": "application/json"}),
    (b"\xff\xfe\x00", {"content-type": "application/json"}),
    (b"[1, 2]", {"content-type": "application/json"}),
    (b"null", {"content-type": "application/json"}),
    (b'{"text": "a", "beam_size": NaN, "n_best": Infinity}', {"content-type": "application/json"}),
    (b"How are you?", {"content-type": "text/plain"}),
])
def test_broken_bodies_are_422(client, content, headers):
    for path in ("/translate", "/explain"):
        assert client.post(path, content=content, headers=headers).status_code in (400, 422)


def test_an_oversized_body_is_refused_before_it_is_parsed(client):
    assert_error(client.post("/translate", json={"text": "a" * 1_000_000}), 413, "body_too_large")


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of the HTTP response on a raw socket."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())


def send_chunked(sock: socket.socket, total: int, chunk: int = 65536) -> int:
    """Send a chunked POST /translate of up to ``total`` bytes, stopping once an answer arrives; the bytes sent."""
    sock.sendall(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    frame, sent = b"%x\r\n%s\r\n" % (chunk, b"a" * chunk), 0
    try:
        while sent < total and not select.select([sock], [], [], 0)[0]:
            sock.sendall(frame)
            sent += chunk
        if sent >= total:
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server closed the connection after its answer: the rest is never read
        pass
    return sent


def test_a_chunked_body_over_the_limit_is_refused_without_reading_the_rest(server):
    total = 64 << 20  # 64 MiB; the limit is under 0.1 MiB
    with socket.create_connection(server, timeout=30) as sock:
        sent = send_chunked(sock, total)
        status, headers, body = read_response(sock)
    assert status == 413 and body["error"]["code"] == "body_too_large", body
    assert f"limit of {LIMITS.max_body_bytes} bytes" in body["error"]["message"]
    assert headers["connection"] == "close" and headers["x-content-type-options"] == "nosniff"
    assert sent < total // 4, f"the server let {sent} bytes in before answering"


def test_a_chunked_body_within_the_limit_is_translated(server, translator):
    connection = http.client.HTTPConnection(*server, timeout=30)
    parts = iter([b'{"text": "How ', b"are you?", b'", "beam_size": 1}'])  # an iterable body goes chunked
    connection.request("POST", "/translate", body=parts, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 200, body
    assert body["translations"][0]["text"] == translator.translate("How are you?")


def test_a_content_length_over_the_limit_is_refused_before_any_body_arrives(server):
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 300000000\r\n\r\n")  # and not a byte of the body
        status, headers, body = read_response(sock)
    assert status == 413 and body["error"]["code"] == "body_too_large", body
    assert "(300000000 bytes)" in body["error"]["message"] and headers["connection"] == "close"


def assert_hardened(response) -> None:
    for name, value in HARDENING.items():
        assert response.headers[name] == value, name


def test_every_response_carries_the_hardening_headers(client):
    assert_hardened(client.get("/"))
    assert_hardened(client.get("/static/app.js"))
    assert_hardened(client.post("/translate", json={"text": "How are you?"}))
    assert_hardened(client.post("/translate", json={"text": 7}))
    assert_hardened(client.get("/nowhere"))


def test_host_names_lose_their_port_and_brackets():
    assert [host_name(h) for h in ("LocalHost:8000", "127.0.0.1", "[::1]:8000", "::1", "", "evil.example.")] == [
        "localhost", "127.0.0.1", "::1", "::1", "", "evil.example."]


def test_a_foreign_host_header_is_refused_as_json(client):
    """A DNS-rebound page sends its own host name: refused, so it cannot read the local server."""
    for host in ("evil.example", "evil.example:8000", "localhost.evil.example", ""):
        response = client.get("/health", headers={"Host": host})
        assert_error(response, 400, "invalid_host")
        assert_hardened(response)
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/health", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_can_name_other_hosts_and_wildcards(translator):
    app = create_app(translator, ServeSettings(allowed_hosts=["mt.example.org", "*.lan"]))
    with TestClient(app, base_url="http://mt.example.org") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Host": "box.lan:8000"}).status_code == 200
        assert_error(client.get("/health", headers={"Host": "localhost"}), 400, "invalid_host")
    with TestClient(create_app(translator, ServeSettings(allowed_hosts=["*"]))) as client:
        assert client.get("/health").status_code == 200  # as testserver


def test_cors_headers_only_when_origins_are_configured(client, translator):
    origin = {"Origin": "https://app.example"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    app = create_app(translator, ServeSettings(cors_origins=["https://app.example"], api_key="sesame"))
    with local_client(app) as cors:
        answer = cors.get("/health", headers={**origin, "X-API-Key": "sesame"})
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        preflight = cors.options("/translate", headers={**origin, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "content-type,x-api-key"})
        assert preflight.status_code == 200  # a preflight carries no key, and needs none
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        refused = cors.get("/health", headers={"Origin": "https://evil.example", "X-API-Key": "sesame"})
        assert "access-control-allow-origin" not in refused.headers


def test_an_api_key_when_set_guards_the_api_but_not_the_page(translator):
    with local_client(create_app(translator, ServeSettings(api_key="open sesame"))) as client:
        assert_error(client.get("/health"), 401, "api_key_required")
        assert_error(client.get("/openapi.json"), 401, "api_key_required")
        assert_error(client.post("/translate", json={"text": "Hello."}), 401, "api_key_required")
        assert_error(client.get("/model", headers={"X-API-Key": "open sesamE"}), 401, "wrong_api_key")
        assert_error(client.get("/model", headers={"X-API-Key": "é".encode("latin-1")}), 401, "wrong_api_key")
        for path in ("/", "/static/app.js", "/static/style.css"):
            assert client.get(path).status_code == 200, path
        key = {"X-API-Key": "open sesame"}
        assert client.post("/translate", json={"text": "Hello."}, headers=key).status_code == 200
        info = client.get("/model", headers=key).json()
        assert "api_key" not in info["limits"] and "open sesame" not in json.dumps(info)


def test_without_an_api_key_none_is_asked_for(client):
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(("fields", "named"), [
    ({"allowed_hosts": []}, "allowed_hosts"),
    ({"allowed_hosts": ["evil.*"]}, "allowed_hosts"),
    ({"cors_origins": ["https://app.example/"]}, "cors_origins"),
    ({"cors_origins": ["app.example"]}, "cors_origins"),
    ({"api_key": ""}, "api_key"),
    ({"api_key": "schlüssel"}, "api_key"),
])
def test_bad_guard_settings_fail_early_and_name_the_field(fields, named):
    with pytest.raises(ValueError, match=f"ServeSettings.{named}"):
        ServeSettings(**fields)


def test_the_settings_never_show_the_api_key():
    assert "sesame" not in repr(ServeSettings(api_key="sesame"))


def test_unknown_paths_and_methods_are_json(client):
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.get("/translate"), 405, "method_not_allowed")


def test_explain_limits_and_errors(client, translator, monkeypatch):
    assert_error(client.post("/explain", json={"text": "a" * 201}), 413, "text_too_long")
    assert_error(client.post("/explain", json={"text": "   "}), 422, "cannot_explain")
    assert_error(client.post("/explain", json={"texts": ["a"]}), 422, "invalid_request")
    monkeypatch.setattr(translator, "explain", None, raising=False)
    assert_error(client.post("/explain", json={"text": "hello"}), 501, "not_supported")


def test_a_full_queue_answers_503(translator, monkeypatch):
    gate = Gate(translator)
    monkeypatch.setattr(translator, "translate_full", gate)
    answers: list = []
    with local_client(create_app(translator, ServeSettings(queue_size=1))) as client:
        first = post_in_thread(client, {"text": "How are you?"}, answers)
        assert gate.entered.wait(10)
        response = client.post("/translate", json={"text": "Don't be late."})
        assert_error(response, 503, "queue_full")
        assert response.headers["retry-after"] == "1"
        gate.opened.set()
        first.join(10)
    assert answers[0].status_code == 200


def test_a_slow_model_answers_504_and_the_server_recovers(translator, monkeypatch):
    gate = Gate(translator)
    monkeypatch.setattr(translator, "translate_full", gate)
    with local_client(create_app(translator, ServeSettings(timeout_s=0.2))) as client:
        assert_error(client.post("/translate", json={"text": "How are you?"}), 504, "timeout")
        gate.opened.set()
        assert client.post("/translate", json={"text": "How are you?"}).status_code == 200
        assert client.get("/health").json()["pending"] == 0


def test_a_model_error_is_a_json_500_without_its_traceback(translator, monkeypatch):
    def broken(*_: Any) -> None:
        raise RuntimeError("the secret internals")

    monkeypatch.setattr(translator, "translate_full", broken)
    with local_client(create_app(translator), raise_server_exceptions=False) as client:
        response = client.post("/translate", json={"text": "How are you?"})
        assert_error(response, 500, "internal_error")
        assert "secret" not in response.text
        assert_hardened(response)


@pytest.mark.parametrize(("max_batch", "calls"), [(64, [1, 2]), (1, [1, 1, 1])])
def test_requests_that_arrive_together_share_one_model_call(translator, monkeypatch, max_batch, calls):
    gate = Gate(translator)
    monkeypatch.setattr(translator, "translate_full", gate)
    answers: list = []
    with local_client(create_app(translator, ServeSettings(max_batch=max_batch))) as client:
        threads = [post_in_thread(client, {"text": "How are you?"}, answers)]
        assert gate.entered.wait(10)  # the model is busy with the first request ...
        threads += [post_in_thread(client, {"text": text}, answers) for text in ("Don't be late.", "Hello.")]
        wait_for_pending(client, 3)  # ... while two more arrive together
        gate.opened.set()
        for thread in threads:
            thread.join(10)
    assert [len(texts) for texts in gate.calls] == calls
    assert sorted(a.json()["timings"]["batch_texts"] for a in answers) == sorted(
        n for n in calls for _ in range(n))


SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=30))
JSON = st.recursive(SCALARS,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    "text": st.text(max_size=300) | JSON, "texts": st.lists(st.text(max_size=60), max_size=6) | JSON,
    "beam_size": st.integers(-3, 8) | JSON, "n_best": st.integers(-3, 8) | JSON, "extra": JSON,
    "glossary": st.lists(st.fixed_dictionaries({"source": st.text(max_size=12), "target": st.text(max_size=12)}),
                         max_size=4) | JSON})


def assert_answered(response) -> None:
    assert response.status_code < 500, response.text
    assert response.status_code == 200 or "error" in response.json()


@FUZZ
@given(text=st.text(max_size=400))
def test_fuzz_random_unicode_translates_or_is_refused(client, text):
    assert_answered(client.post("/translate", json={"text": text}))


@FUZZ
@given(body=FIELDS)
def test_fuzz_request_fields_of_any_type(client, body):
    for path in ("/translate", "/explain"):
        assert_answered(client.post(path, json=body))


@FUZZ
@given(body=JSON)
def test_fuzz_any_json_body(client, body):
    for path in ("/translate", "/explain"):
        assert_answered(client.post(path, json=body))


@FUZZ
@given(content=st.binary(max_size=300))
def test_fuzz_raw_bytes(client, content):
    assert_answered(client.post("/translate", content=content, headers={"content-type": "application/json"}))


@FUZZ
@given(size=st.integers(201, 10**6), char=st.characters(codec="utf-8"))
def test_fuzz_huge_strings_are_413(client, size, char):
    assert client.post("/translate", json={"text": char * size}).status_code == 413


def words_view(translation: dict) -> dict:
    """The page's ``byWords`` (rnnmt/static/app.js) run by Node on one translation."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the page's words view is checked only in the browser test")
    script = ("const vm = require('vm'), fs = require('fs'); const [file, input] = process.argv.slice(1);"
              "const context = vm.createContext({document: {addEventListener() {}}});"
              "process.stdout.write(vm.runInContext(fs.readFileSync(file, 'utf8') +"
              "`;JSON.stringify(byWords(${input}))`, context));")
    result = subprocess.run([node, "-e", script, str(STATIC / "app.js"), json.dumps(translation)],
                            capture_output=True, text=True, check=True, timeout=30)
    return json.loads(result.stdout)


def test_the_pages_words_view_sums_english_pieces_and_averages_hindi_ones():
    attention = [[0.1, 0.2, 0.3, 0.1, 0.2, 0.1],
                 [0.0, 0.5, 0.1, 0.1, 0.2, 0.1],
                 [0.2, 0.1, 0.1, 0.0, 0.4, 0.2],
                 [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]
    view = words_view({"src_tokens": ["▁", "My", "▁sis", "ter's", "▁wedding", "</s>"],
                       "tgt_tokens": ["▁मेरी", "▁ब", "हन", "</s>"], "attention": attention})
    assert view["src"] == ["▁My", "▁sister's", "▁wedding", "</s>"] and view["tgt"] == ["▁मेरी", "▁बहन", "</s>"]
    expected = [[0.3, 0.4, 0.2, 0.1], [0.4, 0.15, 0.3, 0.15], [0, 0, 0, 1]]  # row 2: the mean of rows 2 and 3
    assert [pytest.approx(row) for row in expected] == view["attention"]


def test_the_pages_words_view_keeps_whole_word_tokens():
    view = words_view({"src_tokens": ["Hello", ".", "</s>"], "tgt_tokens": ["नमस्ते", "</s>"],
                       "attention": [[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]})
    assert view == {"src": ["Hello", ".", "</s>"], "tgt": ["नमस्ते", "</s>"],
                    "attention": [[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]}


def test_a_body_that_is_not_json_is_blamed_on_the_body_not_a_field(client):
    response = client.post("/translate", content=b'{"text": "a",}', headers={"content-type": "application/json"})
    error = assert_error(response, 422, "invalid_request")
    message = "not valid JSON: Expecting property name enclosed in double quotes (char 13)"
    assert error["details"] == [{"field": "body", "message": message}] and error["message"] == f"body: {message}"


def test_a_beam_wider_than_the_target_vocabulary_is_a_422(translator):
    with local_client(create_app(translator, ServeSettings(max_beam=1000))) as wide:
        response = wide.post("/translate", json={"text": "Hello.", "beam_size": 300})
    error = assert_error(response, 422, "beam_too_large")
    assert error["message"] == f"beam_size 300 is over the model's target vocabulary size of {translator.tgt.size}"
