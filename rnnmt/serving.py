"""Serving: a FastAPI app over one Translator, with micro-batching, limits, and the page at ``/``.

    POST /translate  {"text": "..."} or {"texts": [...]}, optional beam_size, n_best and glossary
    POST /explain    {"text": "..."}: the step-by-step record of one greedy translation
    GET  /health     liveness and queue depth
    GET  /model      languages, cell, attention, size, training data, scores, limits
    GET  /openapi.json  the OpenAPI schema; GET / is the page (rnnmt/static/)

Translate requests that arrive within ``batch_wait_ms`` of each other become one model call. Every model call
runs on a single worker thread, so the event loop never waits on the model. Every limit and every bad request
answers with JSON ``{"error": {"status", "code", "message"}}`` and the right HTTP status, never a traceback.

ASGI middlewares guard the app, outermost first: hardening headers on every response, the Host check against DNS
rebinding, CORS (only when ``cors_origins`` is set), the API key (only when ``api_key`` is set), and the body
limit, which counts the bytes as they arrive (chunked bodies included) and answers 413 at the limit.
There is no Swagger UI at /docs: it loads its scripts from a CDN, which an offline machine cannot reach and the
page's Content-Security-Policy would block anyway.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rnnmt.glossary import Glossary
from rnnmt.translator import Translation, Translator

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("rnnmt.serving")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # the Host names a local server answers to by default
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")  # the page: its own script and style files, and the empty data: favicon
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Content-Security-Policy": CSP,
                    "Referrer-Policy": "no-referrer"}


@dataclass
class ServeSettings:
    """The server's limits and micro-batching; each limit answers with a JSON error."""

    max_chars: int = 1000  # characters per text (413 beyond)
    max_texts: int = 32  # texts per request (413 beyond)
    max_beam: int = 10  # largest beam_size and n_best (422 beyond)
    max_glossary_terms: int = 100  # glossary terms per request (413 beyond)
    max_term_chars: int = 100  # characters per side of a glossary term (413 beyond)
    queue_size: int = 64  # requests accepted but not yet answered (503 beyond)
    timeout_s: float = 30.0  # per request, waiting in the queue included (504 beyond)
    batch_wait_ms: float = 5.0  # how long a batch waits for more requests after its first one
    max_batch: int = 64  # texts gathered into one model call; 1 turns micro-batching off
    # Host header names answered (400 beyond): a port is ignored, "*.example.com" allows subdomains, "*" any host.
    # A server bound to another address (a LAN name or IP, or 0.0.0.0) must add the names its clients will use.
    allowed_hosts: list[str] = field(default_factory=lambda: list(LOCAL_HOSTS))
    cors_origins: list[str] = field(default_factory=list)  # such as "https://example.org"; "*" any; none: no CORS
    api_key: str | None = field(default=None, repr=False)  # when set, the API needs header X-API-Key (401 without)

    def __post_init__(self) -> None:
        for name, value in self.limits().items():
            if value < 0 or (value == 0 and name != "batch_wait_ms"):
                raise ValueError(f"ServeSettings.{name} must be positive, not {value}")
        check_hosts(self.allowed_hosts)
        check_origins(self.cors_origins)
        key = self.api_key
        if key is not None and (not key or not key.isascii() or not key.isprintable() or key != key.strip()):
            raise ValueError("ServeSettings.api_key must be printable ASCII, not empty, with no space at either end")

    def limits(self) -> dict[str, float]:
        """The numeric limits (what GET /model shows: never the hosts, origins or key)."""
        return {name: value for name, value in asdict(self).items()
                if name not in ("allowed_hosts", "cors_origins", "api_key")}

    @property
    def max_body_bytes(self) -> int:
        """The largest JSON body a request within the limits can need (12 bytes per escaped character)."""
        return 12 * (self.max_chars * self.max_texts + 2 * self.max_term_chars * self.max_glossary_terms) + 65536


def check_hosts(hosts: list[str]) -> None:
    """Refuse an empty list and wildcards other than "*" and a leading "*.", as Starlette's TrustedHost does."""
    if not hosts:
        raise ValueError('ServeSettings.allowed_hosts is empty, so every request would be refused; "*" allows any')
    for host in hosts:
        if "*" in host[1:] or (host.startswith("*") and host != "*" and not host.startswith("*.")):
            raise ValueError(f'ServeSettings.allowed_hosts: {host!r} is not a host name, "*.domain" or "*"')


def check_origins(origins: list[str]) -> None:
    """Each origin is "*" or scheme://host[:port], with no path: a browser's Origin never ends in "/"."""
    for origin in origins:
        scheme, _, rest = origin.partition("://")
        if origin != "*" and (scheme not in ("http", "https") or not rest or "/" in rest):
            raise ValueError(f'ServeSettings.cors_origins: {origin!r} is not "*" or an origin such as '
                             f'"https://example.org" (no path, no trailing slash)')


class ApiError(Exception):
    """An error answered as JSON with an HTTP status and a short machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def valid_unicode(text: str) -> str:
    """Refuse text that cannot be written as UTF-8 (lone surrogates from JSON escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"not valid Unicode: a lone surrogate at character {err.start}") from None
    return text


class GlossaryTerm(BaseModel):
    """One glossary entry: an English term and the Hindi its translation must contain."""

    model_config = ConfigDict(extra="forbid", strict=True)
    source: str = Field(description="an English term, matched on whole words in any case", examples=["virus"])
    target: str = Field(description="the Hindi the translation must contain for it", examples=["वायरस"])

    @field_validator("source", "target")
    @classmethod
    def check_side(cls, text: str) -> str:
        return valid_unicode(text)


class TranslateRequest(BaseModel):
    """English to translate: exactly one of ``text`` or ``texts``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = Field(None, description="one English text", examples=["How are you?"])
    texts: list[str] | None = Field(None, description="several English texts, translated together")
    beam_size: int | None = Field(None, ge=1, description="1 is greedy search; default: the model's config")
    n_best: int = Field(1, ge=1, description="alternatives returned per text, at most beam_size")
    glossary: list[GlossaryTerm] | None = Field(
        None, description="terms whose Hindi must appear in the translation of each text that holds them "
                          "(lexically constrained beam search: best with beam_size 5 or more)")

    @field_validator("text")
    @classmethod
    def check_text(cls, text: str | None) -> str | None:
        return None if text is None else valid_unicode(text)

    @field_validator("texts")
    @classmethod
    def check_texts(cls, texts: list[str] | None) -> list[str] | None:
        return None if texts is None else [valid_unicode(text) for text in texts]

    @model_validator(mode="after")
    def one_of(self) -> TranslateRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" or "texts"')
        if self.texts == []:
            raise ValueError('"texts" is empty')
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class ExplainRequest(BaseModel):
    """One English sentence to explain step by step."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(description="one English sentence", examples=["How are you?"])

    @field_validator("text")
    @classmethod
    def check_text(cls, text: str) -> str:
        return valid_unicode(text)


class Alternative(BaseModel):
    text: str
    score: float | None = Field(description="the search score (length-normalised log probability in beams)")


class TranslationOut(BaseModel):
    source: str = Field(description="the English as the model read it (normalised)")
    text: str = Field(description="the Hindi translation")
    score: float | None = Field(description="log P(translation + </s> | source)")
    n_best: list[Alternative]
    src_tokens: list[str] = Field(description="English tokens, </s> last")
    tgt_tokens: list[str] = Field(description="Hindi tokens, </s> last")
    attention: list[list[float]] | None = Field(description="len(tgt_tokens) x len(src_tokens); rows sum to 1")
    alignment: str | None = Field(description="word alignment from attention, Pharaoh format: i-j pairs of English "
                                              "word i and Hindi word j (whitespace words)")
    terms: list[GlossaryTerm] = Field(description="the glossary's terms found in the text and forced into the "
                                                  "translation")
    warnings: list[str] = Field(description="glossary terms found in the text but not forced, and why")


class Timings(BaseModel):
    queue_ms: float = Field(description="waiting for the model")
    model_ms: float = Field(description="the model call this request shared")
    total_ms: float = Field(description="from arrival to answer")
    batch_texts: int = Field(description="texts in that model call, from all requests batched together")


class TranslateResponse(BaseModel):
    translations: list[TranslationOut]
    beam_size: int
    timings: Timings


def finite(value: float) -> float | None:
    """JSON has no inf or NaN: send null instead."""
    return value if math.isfinite(value) else None


def translation_out(t: Translation) -> TranslationOut:
    """The API's view of one Translation."""
    attention = None if t.attention is None else [[round(w, 4) for w in row] for row in t.attention]
    return TranslationOut(source=t.source, text=t.text, score=finite(t.log_prob),
                          n_best=[Alternative(text=text, score=finite(s)) for text, s in t.n_best],
                          src_tokens=t.src_pieces, tgt_tokens=t.tgt_pieces, attention=attention,
                          alignment=t.alignment, terms=[GlossaryTerm(source=en, target=hi) for en, hi in t.terms],
                          warnings=t.warnings)


@dataclass
class Job:
    """Texts waiting for the model, and the future that gets their translations."""

    texts: list[str]
    beam_size: int
    n_best: int
    glossary: Glossary | None
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


@dataclass
class Done:
    """What a finished job hands back to its request."""

    translations: list[Translation]
    queue_ms: float
    model_ms: float
    batch_texts: int


class ModelWorker:
    """The one thread that runs the model, fed by a micro-batching queue with a bounded number of requests."""

    def __init__(self, translator: Translator, settings: ServeSettings):
        self.translator, self.settings = translator, settings
        self.pending = 0  # requests accepted and not yet answered
        self.executor: ThreadPoolExecutor
        self.queue: asyncio.Queue[Job]
        self.task: asyncio.Task

    async def start(self) -> None:
        """Start the worker thread and the batching loop (on the server's event loop)."""
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rnnmt-model")
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self.batch_forever())

    async def stop(self) -> None:
        self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def translate(self, texts: list[str], beam_size: int, n_best: int, glossary: Glossary | None = None
                        ) -> Done:
        """Queue the texts for the next batch and wait for them, within the limits."""
        self.admit()
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(Job(texts, beam_size, n_best, glossary, future))
        return await self.wait(future)

    async def explain(self, text: str) -> dict[str, Any]:
        """Run ``translator.explain`` on the worker thread, within the limits."""
        self.admit()
        return await self.wait(self.run(self.translator.explain, text))

    def admit(self) -> None:
        """Count a request against the queue bound, or answer 503 when it is full."""
        if self.pending >= self.settings.queue_size:
            raise ApiError(503, "queue_full", f"the server is busy: {self.pending} requests are waiting "
                                              f"(the limit is {self.settings.queue_size}); retry shortly",
                           {"Retry-After": "1"})
        self.pending += 1

    async def wait(self, result: asyncio.Future) -> Any:
        """An admitted request's result, or 504 after ``timeout_s``."""
        try:
            return await asyncio.wait_for(result, self.settings.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {self.settings.timeout_s:g} s") from None
        finally:
            self.pending -= 1

    def run(self, function: Callable, *args: Any) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def batch_forever(self) -> None:
        """Gather the jobs that arrive together, then translate them, one model call per search setting (beam size,
        n-best and glossary: requests with equal glossaries share a call)."""
        while True:
            groups: dict[tuple[int, int, Glossary | None], list[Job]] = {}
            for job in await self.gather():
                if not job.future.done():  # a request that timed out is not translated
                    groups.setdefault((job.beam_size, job.n_best, job.glossary), []).append(job)
            for (beam_size, n_best, glossary), jobs in groups.items():
                await self.run_batch(jobs, beam_size, n_best, glossary)

    async def gather(self) -> list[Job]:
        """The next job, and those that join it within ``batch_wait_ms`` up to ``max_batch`` texts."""
        jobs = [await self.queue.get()]
        loop, size = asyncio.get_running_loop(), len(jobs[0].texts)
        deadline = loop.time() + self.settings.batch_wait_ms / 1000
        while size < self.settings.max_batch:
            left = deadline - loop.time()
            try:  # once the wait is over, only jobs already queued join
                jobs.append(await asyncio.wait_for(self.queue.get(), left) if left > 0 else self.queue.get_nowait())
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            size += len(jobs[-1].texts)
        return jobs

    async def run_batch(self, jobs: list[Job], beam_size: int, n_best: int, glossary: Glossary | None) -> None:
        """Translate all the jobs' texts in one call and hand each job its share (or the error)."""
        texts = [text for job in jobs for text in job.texts]
        start = time.perf_counter()
        try:
            results = await self.run(self.translator.translate_full, texts, beam_size, n_best, glossary)
        except Exception as err:  # handed to every waiting request, which answers 500
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        model_ms = (time.perf_counter() - start) * 1000
        for job in jobs:
            share, results = results[: len(job.texts)], results[len(job.texts) :]
            if not job.future.done():
                job.future.set_result(Done(share, (start - job.queued) * 1000, model_ms, len(texts)))


def check_limits(texts: list[str], settings: ServeSettings) -> None:
    """413 for too many texts or characters, naming the text and the limit."""
    if len(texts) > settings.max_texts:
        raise ApiError(413, "too_many_texts", f"{len(texts)} texts; the limit is {settings.max_texts} per request")
    for i, text in enumerate(texts):
        if len(text) > settings.max_chars:
            raise ApiError(413, "text_too_long",
                           f"text {i} has {len(text)} characters; the limit is {settings.max_chars}")


def check_glossary(terms: list[GlossaryTerm] | None, settings: ServeSettings) -> Glossary | None:
    """The request's glossary (None for none or an empty one): 413 for too many or too long terms, 422 for an
    empty side or an English term given twice with different Hindi, naming the term."""
    if not terms:
        return None
    if len(terms) > settings.max_glossary_terms:
        raise ApiError(413, "too_many_terms", f"{len(terms)} glossary terms; the limit is "
                                              f"{settings.max_glossary_terms} per request")
    for i, term in enumerate(terms):
        for side in ("source", "target"):
            if len(getattr(term, side)) > settings.max_term_chars:
                raise ApiError(413, "term_too_long", f"glossary[{i}].{side} has {len(getattr(term, side))} "
                                                     f"characters; the limit is {settings.max_term_chars}")
    try:
        return Glossary.of([(term.source, term.target) for term in terms])
    except ValueError as err:
        raise ApiError(422, "invalid_glossary", str(err)) from None


def check_search(request: TranslateRequest, translator: Translator, settings: ServeSettings) -> int:
    """The beam size to use (the model's default when not given), or a 422 naming the bad field."""
    beam_size = request.beam_size or translator.config.search.beam_size
    if beam_size > min(settings.max_beam, translator.tgt.size):
        limit = "the limit" if settings.max_beam <= translator.tgt.size else "the model's target vocabulary size"
        raise ApiError(422, "beam_too_large", f"beam_size {beam_size} is over {limit} of "
                                              f"{min(settings.max_beam, translator.tgt.size)}")
    if request.n_best > beam_size:
        raise ApiError(422, "n_best_too_large", f"n_best {request.n_best} cannot exceed beam_size {beam_size}")
    return beam_size


def model_info(translator: Translator, settings: ServeSettings) -> dict[str, Any]:
    """What the model is and what it was trained on, from its config and metadata."""
    config, meta = translator.config, translator.metadata
    m = config.model
    return {
        "name": config.name, "version": meta.get("rnnmt_version"),
        "languages": meta.get("languages", {"source": "en", "target": "hi"}),
        "cell": m.cell, "attention": m.attention, "bidirectional": m.bidirectional,
        "size": {"parameters": sum(p.numel() for p in translator.model.parameters()),
                 "emb_size": m.emb_size, "hidden_size": m.hidden_size, "encoder_layers": m.encoder_layers,
                 "decoder_layers": m.decoder_layers, "vocab": meta.get("vocab_sizes")},
        "training_data": meta.get("training_data"), "training_pairs": meta.get("training_pairs"),
        "steps": meta.get("steps"), "scores": meta.get("best", {}),
        "search": {"beam_size": config.search.beam_size, "n_best": config.search.n_best},
        "device": str(translator.device), "limits": settings.limits(),
    }


def error_response(status: int, code: str, message: str, details: list | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def validation_response(err: RequestValidationError) -> JSONResponse:
    """422 naming each bad field; the input itself is not echoed back (it may be huge)."""
    details = [error_detail(e) for e in err.errors()[:10]]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
    return error_response(422, "invalid_request", summary or "invalid request", details)


def error_detail(error: dict[str, Any]) -> dict[str, str]:
    """One validation error as its field and message; a body that is not JSON is blamed on the body, not a field."""
    if error["type"] == "json_invalid":  # loc is ("body", the character where decoding failed)
        reason = error.get("ctx", {}).get("error", error["msg"])
        return {"field": "body", "message": f"not valid JSON: {reason} (char {error['loc'][-1]})"}
    return {"field": ".".join(str(p) for p in error["loc"][1:]) or "body",
            "message": error["msg"].removeprefix("Value error, ")}


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON: our limits, validation, HTTP errors, and anything unexpected."""
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.code, err.message, None, err.headers)

    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return validation_response(err)

    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        code = HTTPStatus(err.status_code).phrase.lower().replace(" ", "_")
        return error_response(err.status_code, code, str(err.detail), None, err.headers)

    async def internal(_: Request, err: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=err)  # answered outside the middlewares, so it adds their headers
        return error_response(500, "internal_error", "internal error; the server log has the details", None,
                              SECURITY_HEADERS)

    for kind, handler in ((ApiError, api_error), (RequestValidationError, invalid), (HTTPException, http_error),
                          (Exception, internal)):
        app.add_exception_handler(kind, handler)


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` (nosniff, the CSP, no framing, no referrer) to every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_hardened if scope["type"] == "http" else send)


def host_name(host: str) -> str:
    """A Host header's name in lower case, without its port or an IPv6 address's brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class CheckHost:
    """400 unless the Host header names an allowed host: a DNS-rebound page cannot reach a local server.

    Starlette's TrustedHostMiddleware does the same check but answers in plain text (or with a www. redirect).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]):
        self.app, self.any = app, "*" in allowed_hosts
        self.allowed = {host_name(host) for host in allowed_hosts}

    def allows(self, host: str) -> bool:
        return self.any or host in self.allowed or any(
            pattern.startswith("*.") and host.endswith(pattern[1:]) for pattern in self.allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = host_name(Headers(scope=scope).get("host", "")) if scope["type"] == "http" else ""
        if scope["type"] != "http" or self.allows(host):  # the app has no websockets; lifespan has no host
            await self.app(scope, receive, send)
            return
        message = f"the Host header {host[:100]!r} is not one this server answers to (ServeSettings.allowed_hosts)"
        await error_response(400, "invalid_host", message)(scope, receive, send)


class RequireApiKey:
    """401 unless an API request carries header X-API-Key with the key; the page and its files need none."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app, self.key = app, api_key.encode("ascii")

    @staticmethod
    def open_to_all(scope: Scope) -> bool:
        """GET or HEAD of the page or a static file."""
        return scope["method"] in ("GET", "HEAD") and (scope["path"] == "/" or scope["path"].startswith("/static/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.open_to_all(scope):
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-api-key", "").encode("latin-1")
        if hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        message = "this server needs an API key: send it in header X-API-Key" if not given else "wrong API key"
        await error_response(401, "api_key_required" if not given else "wrong_api_key", message)(scope, receive, send)


class LimitBody:
    """413 for a body over ``limit`` bytes, counted as they arrive, whatever Content-Length or chunking say.

    A Content-Length over the limit is refused before a byte is read. Any other body (chunked, or with no length)
    is read here, up to the limit, and then handed on as it came: the app never sees a byte more. The 413 closes
    the connection, so the rest of an oversized upload is never read.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = Headers(scope=scope).get("content-length")
        if size is not None and (not (size.isascii() and size.isdigit()) or int(size) > self.limit):
            await self.too_large(f"{size} bytes")(scope, receive, send)
            return
        messages = await self.read(receive)
        if messages is None:
            await self.too_large(f"more than {self.limit} bytes, sent in chunks")(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def read(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None as soon as they pass the limit."""
        messages, size = [], 0
        while True:
            messages.append(await receive())
            size += len(messages[-1].get("body", b""))
            if size > self.limit:
                return None
            if messages[-1]["type"] != "http.request" or not messages[-1].get("more_body", False):
                return messages

    def too_large(self, size: str) -> JSONResponse:
        return error_response(413, "body_too_large", f"the request body ({size}) is over the limit of "
                                                     f"{self.limit} bytes", None, {"Connection": "close"})


def add_middleware(app: FastAPI, settings: ServeSettings) -> None:
    """The guards, innermost first (Starlette runs the last one added first)."""
    app.add_middleware(LimitBody, limit=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(RequireApiKey, api_key=settings.api_key)
    if settings.cors_origins:  # outside the key check: a browser's preflight request carries no key
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key"])
    app.add_middleware(CheckHost, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(SecurityHeaders)


def add_routes(app: FastAPI, worker: ModelWorker, settings: ServeSettings) -> None:
    translator = worker.translator

    @app.post("/translate", response_model=TranslateResponse)
    async def translate(request: TranslateRequest) -> TranslateResponse:
        """Translate one text or several, with scores, tokens, attention and timings."""
        arrived = time.perf_counter()
        texts = request.all_texts()
        check_limits(texts, settings)
        beam_size = check_search(request, translator, settings)
        glossary = check_glossary(request.glossary, settings)
        done = await worker.translate(texts, beam_size, request.n_best, glossary)
        timings = Timings(queue_ms=done.queue_ms, model_ms=done.model_ms, batch_texts=done.batch_texts,
                          total_ms=(time.perf_counter() - arrived) * 1000)
        return TranslateResponse(translations=[translation_out(t) for t in done.translations],
                                 beam_size=beam_size, timings=timings)

    @app.post("/explain")
    async def explain(request: ExplainRequest) -> dict[str, Any]:
        """The step-by-step record of one greedy translation: tokens, states, top candidates, attention."""
        check_limits([request.text], settings)
        if getattr(translator, "explain", None) is None:
            raise ApiError(501, "not_supported", "this version of rnnmt cannot explain translations")
        try:
            return await worker.explain(request.text)
        except ValueError as err:
            raise ApiError(422, "cannot_explain", str(err)) from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and how many requests are waiting."""
        return {"status": "ok", "pending": worker.pending, "queue_size": settings.queue_size}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        """Model metadata: languages, cell, attention, size, training data, scores, and the server's limits."""
        return model_info(translator, settings)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")


def create_app(translator: Translator, settings: ServeSettings | None = None) -> FastAPI:
    """The rnnmt web app: the API, its OpenAPI schema at /openapi.json, and the page at /.

    Its worker starts with the app's lifespan, which uvicorn runs, and so does ``with TestClient(app)``.
    The Host check allows ``settings.allowed_hosts`` only: a server bound to another address must add it.
    """
    settings = settings or ServeSettings()
    worker = ModelWorker(translator, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await worker.start()
        yield
        await worker.stop()

    app = FastAPI(title="rnnmt", summary="English to Hindi translation with a recurrent encoder-decoder",
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # Swagger UI and ReDoc come from a CDN
    app.state.worker = worker
    add_error_handlers(app)
    add_middleware(app, settings)
    add_routes(app, worker, settings)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
