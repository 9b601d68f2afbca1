"""The REST API: happy paths, every limit and error as JSON, micro-batching, and fuzzed input that never gives a 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnmt.serving import STATIC, ServeSettings, create_app
from rnnmt.translator import Translator

LIMITS = ServeSettings(max_chars=200, max_texts=4, max_beam=4, queue_size=8, timeout_s=20.0)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def translator(tiny_model) -> Translator:
    return Translator.load(tiny_model, "cpu")


@pytest.fixture(scope="module")
def client(translator) -> Iterator[TestClient]:
    with TestClient(create_app(translator, LIMITS)) as client:
        yield client


class Gate:
    """Stands in for ``translate_full``: records each call's texts and blocks until opened."""

    def __init__(self, translator: Translator):
        self.real, self.calls = translator.translate_full, []
        self.entered, self.opened = threading.Event(), threading.Event()

    def __call__(self, texts: list[str], *args: Any) -> list:
        self.calls.append(list(texts))
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


def test_health_and_model_metadata(client):
    assert client.get("/health").json() == {"status": "ok", "pending": 0, "queue_size": 8}
    info = client.get("/model").json()
    assert info["languages"] == {"source": "en", "target": "hi"}
    assert (info["cell"], info["attention"], info["name"]) == ("gru", "luong_general", "tiny")
    assert info["size"]["parameters"] > 0 and info["size"]["hidden_size"] == 64
    assert info["training_data"] == ["bundled:train"] and "dev_chrf" in info["scores"]
    assert info["limits"]["max_chars"] == 200


def test_docs_page_and_static_files(client):
    assert "/translate" in client.get("/openapi.json").json()["paths"]
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and 'id="source"' in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_the_page_fetches_nothing_from_elsewhere():
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


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
])
def test_every_limit_and_bad_field_is_a_json_error(client, body, status, code):
    assert_error(client.post("/translate", json=body), status, code)


def test_errors_name_the_field_and_the_limit(client):
    assert "text 1 has 201 characters; the limit is 200" in client.post(
        "/translate", json={"texts": ["ok", "b" * 201]}).json()["error"]["message"]
    error = assert_error(client.post("/translate", json={"text": 7}), 422, "invalid_request")
    assert error["details"] == [{"field": "text", "message": "Input should be a valid string"}]


@pytest.mark.parametrize(("content", "headers"), [
    (b"", {"content-type": "application/json"}),
    (b"{not json", {"content-type": "application/json"}),
    (b'{"text": "\\ud800"}', {"content-type": "application/json"}),
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
    with TestClient(create_app(translator, ServeSettings(queue_size=1))) as client:
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
    with TestClient(create_app(translator, ServeSettings(timeout_s=0.2))) as client:
        assert_error(client.post("/translate", json={"text": "How are you?"}), 504, "timeout")
        gate.opened.set()
        assert client.post("/translate", json={"text": "How are you?"}).status_code == 200
        assert client.get("/health").json()["pending"] == 0


def test_a_model_error_is_a_json_500_without_its_traceback(translator, monkeypatch):
    def broken(*_: Any) -> None:
        raise RuntimeError("the secret internals")

    monkeypatch.setattr(translator, "translate_full", broken)
    with TestClient(create_app(translator), raise_server_exceptions=False) as client:
        response = client.post("/translate", json={"text": "How are you?"})
        assert_error(response, 500, "internal_error")
        assert "secret" not in response.text


@pytest.mark.parametrize(("max_batch", "calls"), [(64, [1, 2]), (1, [1, 1, 1])])
def test_requests_that_arrive_together_share_one_model_call(translator, monkeypatch, max_batch, calls):
    gate = Gate(translator)
    monkeypatch.setattr(translator, "translate_full", gate)
    answers: list = []
    with TestClient(create_app(translator, ServeSettings(max_batch=max_batch))) as client:
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
    "beam_size": st.integers(-3, 8) | JSON, "n_best": st.integers(-3, 8) | JSON, "extra": JSON})


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
