"""`gpt2-desktop serve`: an OpenAI-compatible HTTP server on one loaded model (Starlette on uvicorn).

One engine thread runs the requests one after another, in the order they came (a bounded queue; 429
when it is full); the event loop only reads bodies, checks them (`engine.tooling.openai_api`) and
writes answers, so `/health` and `/v1/models` answer while a generation runs. Prompts are tokenised on a
worker thread, by a call that lets go of the GIL. A client that goes away, streaming or not, has its
generation cancelled before the next token; Ctrl+C or SIGTERM stops every generation at once. What is
refused before a request reaches the routes (other hosts, other origins, bodies that are not JSON) and
the limits on connections are in `engine.tooling.server_guard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import json
import logging
import queue
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Match, Route

from engine.core.loader import LoadedModel
from engine.errors import EngineError, UsageError
from engine.inference.chat import Turn, chat_style, format_chat
from engine.inference.generate import Done, Generator, TokenEvent
from engine.inference.scoring import score_ids
from engine.tooling import openai_api as api
from engine.tooling.openai_api import ApiError, TokenInfo
from engine.tooling.server_guard import Guard, HostRule, LogBudget, connection_class, connection_limit

_END = object()
log = logging.getLogger("uvicorn.error")  # where uvicorn says what it has to say, in its format


@dataclass(frozen=True)
class ServerOptions:
    api_key: str | None = None
    allow_origins: tuple[str, ...] = ()
    host: str = "127.0.0.1"  # where it listens: a request addressed to it by that name is accepted
    allow_hosts: tuple[str, ...] = ()  # other names a request may address it by (a proxy's, this computer's)
    queue_size: int = 32  # requests waiting behind the running one
    max_body_bytes: int = 8 * 2**20
    slide: bool = False  # let generations past the context window slide on instead of refusing them
    log_requests: bool = False  # one JSON line on stdout per finished request (the window's server panel reads them)
    timeout: float = 15.0  # seconds for a request's headers, and again for its body; an idle connection's life
    max_connections: int = 256  # open at once (fewer where the open-file limit is low)


def _shutting_down() -> ApiError:
    return ApiError(503, "The server is shutting down; this request was stopped. Try again once it is back.",
                    kind="server_error", code="shutting_down")


# the engine thread

class Job:
    """One request's work, run on the engine thread; what it yields reaches the event loop in order."""

    def __init__(self, work: Callable[[threading.Event], Iterator], loop: asyncio.AbstractEventLoop):
        self.work = work
        self.loop = loop
        self.out: asyncio.Queue = asyncio.Queue()
        self.cancel = threading.Event()

    def send(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the event loop has closed: the server is shutting down
            self.cancel.set()

    async def items(self):
        """What the work yields, until it ends; an ApiError it raised is raised here."""
        while True:
            item = await self.out.get()
            if item is _END:
                return
            if isinstance(item, ApiError):
                raise item
            yield item


class EngineThread:
    def __init__(self, loaded: LoadedModel, queue_size: int):
        self.loaded = loaded
        self.generator = Generator(loaded)
        self.jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self.running: Job | None = None
        self.served = 0
        self.halted = False  # the server is stopping: nothing new is taken, nothing under way goes on
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        if self.halted:
            raise _shutting_down()
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise ApiError(429, f"The server is busy: {self.jobs.maxsize} requests are already waiting. "
                                "Try again shortly.", code="queue_full", kind="rate_limit_error") from None

    def halt(self) -> None:
        """Stop the running generation at its next token and the waiting ones before they start; each is
        answered 503 (a stream: as its last event)."""
        self.halted = True
        with self.jobs.mutex:
            waiting = [job for job in self.jobs.queue if job is not None]
        for job in waiting + [self.running]:
            if job is not None:
                job.cancel.set()

    def stop(self) -> None:
        self.halt()
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.send(_END)
        self.jobs.put(None)

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if job.cancel.is_set():
                if self.halted:
                    job.send(_shutting_down())
                job.send(_END)
                continue
            self.running = job
            try:
                for item in job.work(job.cancel):
                    job.send(item)
            except ApiError as exc:
                job.send(exc)
            except EngineError as exc:
                job.send(ApiError(400, str(exc)))
            except Exception:  # a bug: said on the server's console, a plain 500 to the client
                log.exception("The engine failed on a request:")
                job.send(ApiError(500, "The server failed on this request; its console has the details.",
                                  kind="server_error", code="internal_error"))
            finally:
                self.running = None
                self.served += 1
                job.send(_END)


# the work of a request, on the engine thread

@dataclass(frozen=True)
class Piece:
    """Part of an answer: the echoed prompt, a generated token, or the end of one choice."""

    index: int  # the choice's index in the answer
    echo: tuple[str, list[TokenInfo]] | None = None
    prompt_logprobs: list[dict | None] | None = None  # vLLM's, when asked for
    event: TokenEvent | None = None
    done: Done | None = None


@dataclass(frozen=True)
class Planned:
    """One prompt, checked against the model's window: its ids and how many tokens to write."""

    ids: list[int]
    text: str  # the prompt as text (echoed)
    max_tokens: int


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """What `tokenizer.encode` gives for each text, through the tokenizers library's batch call, which lets
    go of the GIL while it works (its one-text call does not): tokenising a long prompt on a worker thread
    then leaves the event loop free."""
    if not texts:
        return []
    return [encoding.ids for encoding in tokenizer.backend.encode_batch(texts, add_special_tokens=False)]


class Server:
    """The HTTP side: routes, checks, and the shaping of answers."""

    def __init__(self, loaded: LoadedModel, options: ServerOptions):
        self.loaded = loaded
        self.options = options
        self.model_id = loaded.name
        self.engine: EngineThread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.vocab_size = loaded.config.vocab_size
        tokenizer = loaded.tokenizer
        # No token is longer than this many bytes, so a prompt of more characters than the window times this
        # can never fit: refused before it is tokenised.
        self.longest_token = max(len(tokenizer.token_bytes(i)) for i in range(tokenizer.vocab_size)) or 1

    # plumbing

    def app(self) -> Starlette:
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/tokenize", self.tokenize, methods=["POST"]),
        ]
        options = self.options
        middleware = [Middleware(Guard, hosts=HostRule(options.host, options.allow_hosts),
                                 allow_origins=options.allow_origins)]
        if options.allow_origins:
            middleware.append(Middleware(CORSMiddleware, allow_origins=list(options.allow_origins),
                                         allow_methods=["GET", "POST", "OPTIONS"],
                                         allow_headers=["Authorization", "Content-Type"]))
        if options.log_requests:
            middleware.insert(0, Middleware(_RequestLog))
        handlers = {ApiError: self._api_error, HTTPException: self._http_error, ClientDisconnect: self._gone,
                    Exception: self._crash}
        app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=self._lifespan)
        app.router.redirect_slashes = False  # its redirect names the Host header's server: _http_error's names none
        return app

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        self.loop = asyncio.get_running_loop()
        self.engine = EngineThread(self.loaded, self.options.queue_size)
        yield
        self.engine.stop()

    def halt_soon(self) -> None:
        """Stop every generation at once (Ctrl+C, SIGTERM); safe to call from a signal handler."""
        if self.loop is not None and self.engine is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing runs any more
                self.loop.call_soon_threadsafe(self.engine.halt)

    @staticmethod
    async def _api_error(request: Request, exc: ApiError) -> Response:
        # Refused before the body was read (413), or while it was (408): the rest of it is not waited for.
        headers = {"Connection": "close"} if exc.status in (408, 413) else None
        return _error_response(exc, headers)

    @staticmethod
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if exc.status_code == 404:
            other = path[:-1] if path.endswith("/") else path + "/"
            scope = {**request.scope, "path": other}
            if path != "/" and any(route.matches(scope)[0] is not Match.NONE for route in request.app.router.routes):
                query = request.url.query
                return RedirectResponse(other + (f"?{query}" if query else ""), status_code=307)
            message = f"There is no {path} here: see GET /v1/models, POST /v1/completions, " \
                      "POST /v1/chat/completions and GET /health."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {path}."
        else:
            message = str(exc.detail)
        return _error_response(ApiError(exc.status_code, message, code=str(exc.status_code)), exc.headers)

    @staticmethod
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        host, port = request.client or ("?", 0)
        log.warning("%s:%s went away before its request had arrived whole; nothing was done for it.", host, port)
        return Response(status_code=499)  # nobody reads it; the request log shows it as nginx does

    @staticmethod
    async def _crash(request: Request, exc: Exception) -> Response:
        log.error("The server failed on %s %s:", request.method, request.url.path, exc_info=exc)
        return _error_response(ApiError(500, "The server failed on this request; its console has the details.",
                                        kind="server_error", code="internal_error"))

    def _authorise(self, request: Request) -> None:
        key = self.options.api_key
        if key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "This server needs an API key: send the header 'Authorization: Bearer KEY'.",
                           code="missing_api_key")
        # Starlette decodes headers as latin-1: their bytes are those, and a UTF-8 key is compared as UTF-8.
        if not hmac.compare_digest(given.strip().encode("latin-1"), key.encode("utf-8")):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    async def _body(self, request: Request) -> dict:
        limit = self.options.max_body_bytes
        too_big = ApiError(413, f"The request body is larger than this server accepts ({limit:,} bytes).",
                           code="request_too_large")
        declared = request.headers.get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            raise ApiError(400, "Content-Length must be a number of bytes.")
        if declared is not None and int(declared) > limit:
            raise too_big

        async def read() -> bytearray:
            data = bytearray()
            async for chunk in request.stream():
                data += chunk
                if len(data) > limit:
                    raise too_big
            return data

        try:
            data = await asyncio.wait_for(read(), self.options.timeout)
        except asyncio.TimeoutError:
            raise ApiError(408, f"The request body did not arrive within {self.options.timeout:g} s.",
                           code="request_timeout") from None
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            raise ApiError(400, "We could not parse the JSON body of your request: send a JSON object "
                                "(Content-Type: application/json).", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The JSON body of the request must be an object.", code="invalid_json")
        return body

    def _check_model(self, model: str | None) -> None:
        if model is not None and model != self.model_id:
            raise ApiError(404, f"The model '{model}' does not exist here; this server serves '{self.model_id}' "
                                "(see GET /v1/models).", param="model", code="model_not_found")

    def _card(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": 0, "owned_by": "gpt2-desktop",
                "max_model_len": self.loaded.context_window}

    # routes

    async def health(self, request: Request) -> Response:
        engine = self.engine
        return JSONResponse({"status": "ok", "model": self.model_id, "busy": engine.running is not None,
                             "waiting": engine.jobs.qsize(), "served": engine.served})

    async def models(self, request: Request) -> Response:
        self._authorise(request)
        return JSONResponse({"object": "list", "data": [self._card()]})

    async def model(self, request: Request) -> Response:
        self._authorise(request)
        self._check_model(request.path_params["model_id"])
        return JSONResponse(self._card())

    async def completions(self, request: Request) -> Response:
        self._authorise(request)
        req = api.parse_completion(await self._body(request), self.vocab_size)
        self._check_model(req.model)
        planned = await asyncio.to_thread(self._plan, req.prompts, req.sampling.max_tokens)
        job = self._submit(lambda cancel: self._complete(planned, req, cancel))
        answer = _CompletionAnswer(self, req, planned)
        if req.sampling.stream:
            return _sse(answer.chunks(job), job)
        return JSONResponse(await answer.collect(job, request))

    async def chat_completions(self, request: Request) -> Response:
        self._authorise(request)
        req = api.parse_chat(await self._body(request), self.vocab_size)
        self._check_model(req.model)
        prompt = format_chat([Turn(role, content) for role, content in req.messages], chat_style(self.model_id))
        planned, = await asyncio.to_thread(self._plan, [prompt.text], req.sampling.max_tokens, True)
        settings = replace(req.sampling.settings, stop=prompt.stop + req.sampling.settings.stop)
        job = self._submit(lambda cancel: self._chat(planned, req, settings, cancel))
        answer = _ChatAnswer(self, req, planned)
        if req.sampling.stream:
            return _sse(answer.chunks(job), job)
        return JSONResponse(await answer.collect(job, request))

    async def tokenize(self, request: Request) -> Response:
        """vLLM's `POST /tokenize`: a text's token ids as this model's tokenizer makes them, and the window."""
        self._authorise(request)
        req = api.parse_tokenize(await self._body(request))
        self._check_model(req.model)
        ids = self.loaded.tokenizer.encode(req.prompt)
        return JSONResponse({"count": len(ids), "max_model_len": self.loaded.context_window, "tokens": ids})

    def _submit(self, work) -> Job:
        job = Job(work, asyncio.get_running_loop())
        self.engine.submit(job)
        return job

    def _plan(self, prompts: list[str | list[int]], max_tokens: int | None, chat: bool = False) -> list[Planned]:
        """Each prompt's ids, checked against the model's window; on a worker thread (tokenising takes a while)."""
        where = "messages" if chat else "prompt"
        window, most = self.loaded.context_window, self.loaded.context_window * self.longest_token
        for prompt in prompts:
            if not self.options.slide and isinstance(prompt, str) and len(prompt) > most:
                raise ApiError(400, f"This model's maximum context length is {window} tokens, and {len(prompt):,} "
                                    f"characters are more than that many tokens can hold (at most {most:,}: no "
                                    f"token is longer than {self.longest_token}). Please shorten the {where}.",
                               param=where, code="context_length_exceeded")
        encoded = iter(encode_texts(self.loaded.tokenizer, [p for p in prompts if isinstance(p, str)]))
        planned = []
        for prompt in prompts:
            ids = next(encoded) if isinstance(prompt, str) else prompt
            max_new = self._room(ids, max_tokens, where)
            text = prompt if isinstance(prompt, str) else self.loaded.tokenizer.decode(prompt)
            planned.append(Planned(ids, text, max_new))
        return planned

    def _room(self, ids: list[int], max_tokens: int | None, where: str) -> int:
        """How many tokens to write after `ids`: `max_tokens`, or what the window leaves; refused if they do
        not fit (unless --slide)."""
        window = self.loaded.context_window
        if max_tokens is None:  # chat's default: what the window leaves
            max_tokens = max(0, window - len(ids)) if not self.options.slide else 256
            if max_tokens == 0:
                raise ApiError(400, f"This model's maximum context length is {window} tokens, and the messages "
                                    f"take {len(ids)}: shorten them or set 'max_tokens'.",
                               param="messages", code="context_length_exceeded")
        if not self.options.slide and len(ids) + max_tokens > window:
            raise ApiError(400, f"This model's maximum context length is {window} tokens. However, you requested "
                                f"{len(ids) + max_tokens} tokens ({len(ids)} in the {where}, {max_tokens} for the "
                                "completion). Please shorten the prompt or lower 'max_tokens'.",
                           param="max_tokens" if max_tokens else where, code="context_length_exceeded")
        return max_tokens

    # the work, on the engine thread

    def _token(self, token: int, logprob: float | None, as_ids: bool = False) -> TokenInfo:
        """`as_ids`: named "token_id:464", as vLLM's `return_tokens_as_token_ids` does."""
        data = self.loaded.tokenizer.token_bytes(token)
        return TokenInfo(f"token_id:{token}" if as_ids else api.token_text(data), logprob, {}, list(data))

    def _echo(self, planned: Planned, k: int | None, as_ids: bool = False) -> list[TokenInfo]:
        """The prompt's tokens with their log-probabilities (the first has none), as `echo` shows them."""
        ids = planned.ids
        if not ids:
            return []
        infos = [self._token(ids[0], None, as_ids)]
        if k is None:
            return infos + [self._token(i, None, as_ids) for i in ids[1:]]
        for batch in score_ids(self.loaded, ids, top_logprobs=k, bos=False):
            for score in batch:
                info = self._token(score.token, score.logprob, as_ids)
                info.top = self._top(score.top, info, as_ids)
                infos.append(info)
        return infos

    def _prompt_logprobs(self, planned: Planned, k: int) -> list[dict | None]:
        """vLLM's `prompt_logprobs`: None for the first prompt token; for each after it, by token id, its own
        log-probability, rank and text and those of the k likeliest tokens there."""
        if not planned.ids:
            return []
        out: list[dict | None] = [None]
        for batch in score_ids(self.loaded, planned.ids, top_logprobs=max(1, k), bos=False):  # k 0: ranks too
            for score in batch:
                entry = {str(score.token): api.ranked(score.logprob, score.rank, score.text)}
                for rank, alt in enumerate(score.top[:k], 1):
                    entry.setdefault(str(alt.token), api.ranked(alt.logprob, rank, alt.text))
                out.append(entry)
        return out

    def _top(self, alternatives, chosen: TokenInfo, as_ids: bool = False) -> dict[str, float]:
        top = {f"token_id:{a.token}" if as_ids else api.token_text(self.loaded.tokenizer.token_bytes(a.token)):
               a.logprob for a in alternatives}
        if chosen.logprob is not None:
            top.setdefault(chosen.text, chosen.logprob)  # the chosen token is always there, as OpenAI does
        return top

    def _generate(self, planned: Planned, settings, index: int, k: int, cancel: threading.Event):
        for event in self.engine.generator.stream(planned.ids, settings, cancel=cancel, top_logprobs=k):
            if isinstance(event, Done):
                if event.stop_reason == "cancelled" and self.engine.halted:
                    raise _shutting_down()  # not an answer cut short as if it were whole
                yield Piece(index, done=event)
            else:
                yield Piece(index, event=event)

    def _complete(self, planned: list[Planned], req: api.CompletionRequest, cancel: threading.Event):
        n, base = req.sampling.n, req.sampling.settings
        for p, prompt in enumerate(planned):
            echoed = (prompt.text, self._echo(prompt, req.logprobs, req.token_ids)) if req.echo else None
            scored = self._prompt_logprobs(prompt, req.prompt_logprobs) if req.prompt_logprobs is not None else None
            for c in range(n):
                if cancel.is_set():
                    return
                index = p * n + c
                if echoed is not None:
                    yield Piece(index, echo=echoed)
                if scored is not None:
                    yield Piece(index, prompt_logprobs=scored)
                if prompt.max_tokens == 0:
                    yield Piece(index, done=Done("", [], len(prompt.ids), "length", 0.0, 0.0))
                    continue
                seed = None if base.seed is None else (base.seed + c) % 2**63
                settings = replace(base, max_new_tokens=prompt.max_tokens, seed=seed)
                yield from self._generate(prompt, settings, index, req.logprobs or 0, cancel)

    def _chat(self, planned: Planned, req: api.ChatRequest, settings, cancel: threading.Event):
        for c in range(req.sampling.n):
            if cancel.is_set():
                return
            seed = None if settings.seed is None else (settings.seed + c) % 2**63
            choice = replace(settings, max_new_tokens=planned.max_tokens, seed=seed)
            yield from self._generate(planned, choice, c, req.top_logprobs if req.logprobs else 0, cancel)

    def token_info(self, event: TokenEvent, top_in_dict: bool, as_ids: bool = False) -> TokenInfo:
        info = self._token(event.token, event.logprob, as_ids)
        if top_in_dict:
            info.top = self._top(event.top, info, as_ids)
        else:
            info.top = {api.token_text(self.loaded.tokenizer.token_bytes(a.token)): a.logprob for a in event.top}
        return info


class _RequestLog:
    """ASGI middleware: when a request is answered, `{"request": {"client", "method", "path", "status", "ms"}}`
    on stdout, one line."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [0]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            host, port = scope.get("client") or ("?", 0)
            print(json.dumps({"request": {"client": f"{host}:{port}", "method": scope["method"], "path": scope["path"],
                                          "status": status[0], "ms": round((time.perf_counter() - started) * 1000)}}),
                  flush=True)


# the answers, on the event loop

def _error_response(exc: ApiError, headers: dict | None = None) -> Response:
    """An error in OpenAI's shape; written in ASCII, so that no text a client sent (a lone surrogate) can
    keep it from being encoded."""
    return Response(json.dumps(exc.body()), status_code=exc.status, headers=headers, media_type="application/json")


def _sse(chunks, job: Job) -> StreamingResponse:
    async def body():
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
        except ApiError as exc:  # after the headers went out: the error as the stream's last event
            yield f"data: {json.dumps(exc.body())}\n\n"
        finally:
            job.cancel.set()  # the client went away (or the answer is complete): nothing more to do

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _until_done(job: Job, request: Request):
    """A job's items for an answer sent at the end; the job is cancelled as soon as the client goes away (its
    next token is not written)."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        job.cancel.set()

    watcher = asyncio.ensure_future(watch())
    try:
        async for item in job.items():
            yield item
    finally:
        watcher.cancel()
        job.cancel.set()


class _CompletionAnswer:
    def __init__(self, server: Server, req: api.CompletionRequest, planned: list[Planned]):
        self.server, self.req, self.planned = server, req, planned
        self.id = api.new_id("cmpl")
        n = req.sampling.n
        self.texts = [""] * (len(planned) * n)
        self.tokens: list[list[TokenInfo]] = [[] for _ in self.texts]
        self.offsets = [0] * len(self.texts)
        self.finish: list[str | None] = [None] * len(self.texts)
        self.prompt_logprobs: list[list | None] = [None] * len(self.texts)
        self.prompt_tokens = sum(len(p.ids) for p in planned)
        self.completion_tokens = 0
        self.cached_tokens = 0

    def _take(self, piece: Piece) -> tuple[str, list[TokenInfo]]:
        """The text and tokens a piece adds to its choice."""
        if piece.echo is not None:
            text, tokens = piece.echo
            return text, list(tokens)
        if piece.prompt_logprobs is not None:
            self.prompt_logprobs[piece.index] = piece.prompt_logprobs
            return "", []
        if piece.event is not None:
            self.completion_tokens += 1
            return piece.event.text, [self.server.token_info(piece.event, top_in_dict=True, as_ids=self.req.token_ids)]
        self.finish[piece.index] = api.finish_reason(piece.done.stop_reason)
        if piece.index % self.req.sampling.n == 0:  # a prompt's first choice: the one that prefilled it
            self.cached_tokens += piece.done.cached_tokens
        return "", []

    def _logprobs(self, index: int, tokens: list[TokenInfo]) -> dict | None:
        if self.req.logprobs is None:
            return None
        out = api.completion_logprobs(tokens, self.offsets[index])
        self.offsets[index] += sum(len(t.text) for t in tokens)
        return out

    def _usage(self) -> dict:
        return api.usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens)

    async def collect(self, job: Job, request: Request) -> dict:
        async for piece in _until_done(job, request):
            text, tokens = self._take(piece)
            self.texts[piece.index] += text
            self.tokens[piece.index] += tokens
        choices = [{"index": i, "text": self.texts[i], "logprobs": self._logprobs(i, self.tokens[i]),
                    "finish_reason": self.finish[i] or "length"} for i in range(len(self.texts))]
        if self.req.prompt_logprobs is not None:
            for choice, scored in zip(choices, self.prompt_logprobs):
                choice["prompt_logprobs"] = scored
        return api.envelope("text_completion", self.id, self.server.model_id, choices, usage=self._usage())

    async def chunks(self, job: Job):
        """The stream's chunks; the usage comes with the last choice's end, or, with `include_usage`, alone in
        a final chunk without choices, as OpenAI sends it."""
        model = self.server.model_id
        last = len(self.texts) - 1
        include_usage = self.req.sampling.include_usage
        async for piece in job.items():
            text, tokens = self._take(piece)
            if piece.done is not None:
                extra = {"usage": self._usage()} if piece.index == last and not include_usage else {}
                yield api.envelope("text_completion", self.id, model, [
                    {"index": piece.index, "text": "", "logprobs": None,
                     "finish_reason": self.finish[piece.index]}], **extra)
            elif text or (tokens and self.req.logprobs is not None):
                yield api.envelope("text_completion", self.id, model, [
                    {"index": piece.index, "text": text, "logprobs": self._logprobs(piece.index, tokens),
                     "finish_reason": None}])
        if include_usage:
            yield api.envelope("text_completion", self.id, model, [], usage=self._usage())


class _ChatAnswer:
    def __init__(self, server: Server, req: api.ChatRequest, planned: Planned):
        self.server, self.req, self.planned = server, req, planned
        self.id = api.new_id("chatcmpl")
        n = req.sampling.n
        self.texts = [""] * n
        self.tokens: list[list[TokenInfo]] = [[] for _ in range(n)]
        self.finish: list[str | None] = [None] * n
        self.completion_tokens = 0
        self.cached_tokens = 0

    def _take(self, piece: Piece) -> tuple[str, list[TokenInfo]]:
        if piece.event is None:
            self.finish[piece.index] = api.finish_reason(piece.done.stop_reason)
            if piece.index == 0:
                self.cached_tokens = piece.done.cached_tokens
            return "", []
        self.completion_tokens += 1
        text = piece.event.text
        if not self.texts[piece.index]:  # the reply starts at its first visible character
            text = text.lstrip()
        self.texts[piece.index] += text
        info = self.server.token_info(piece.event, top_in_dict=False) if self.req.logprobs else None
        return text, [info] if info else []

    def _usage(self) -> dict:
        return api.usage(len(self.planned.ids), self.completion_tokens, self.cached_tokens)

    async def collect(self, job: Job, request: Request) -> dict:
        async for piece in _until_done(job, request):
            _, tokens = self._take(piece)
            if piece.event is not None:
                self.tokens[piece.index] += tokens
        choices = [{"index": i, "message": {"role": "assistant", "content": self.texts[i]},
                    "logprobs": api.chat_logprobs(self.tokens[i]) if self.req.logprobs else None,
                    "finish_reason": self.finish[i] or "length"} for i in range(len(self.texts))]
        return api.envelope("chat.completion", self.id, self.server.model_id, choices, usage=self._usage())

    async def chunks(self, job: Job):
        model = self.server.model_id
        kind = "chat.completion.chunk"
        started = [False] * len(self.texts)
        last = len(self.texts) - 1
        include_usage = self.req.sampling.include_usage
        async for piece in job.items():
            if not started[piece.index]:
                started[piece.index] = True
                yield api.envelope(kind, self.id, model, [{"index": piece.index, "logprobs": None,
                                                           "delta": {"role": "assistant", "content": ""},
                                                           "finish_reason": None}])
            text, tokens = self._take(piece)
            if piece.done is not None:
                extra = {"usage": self._usage()} if piece.index == last and not include_usage else {}
                yield api.envelope(kind, self.id, model, [{"index": piece.index, "delta": {}, "logprobs": None,
                                                           "finish_reason": self.finish[piece.index]}], **extra)
            elif text or tokens:
                logprobs = api.chat_logprobs(tokens) if self.req.logprobs else None
                yield api.envelope(kind, self.id, model, [{"index": piece.index, "delta": {"content": text},
                                                           "logprobs": logprobs, "finish_reason": None}])
        if include_usage:
            yield api.envelope(kind, self.id, model, [], usage=self._usage())


# running it

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, before the model loads, so that an address that is not this computer's or
    a port that is taken is said at once; `serve` listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"gpt2-desktop serve: {_bind_problem(host, port, exc)}") from None
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return (f"--host {host} is not an address (give one such as 127.0.0.1, ::1 or 0.0.0.0, or a name of "
                "this computer)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"--host {host} is not an address of this computer (give one of its own, 127.0.0.1 for this "
                "computer only, or 0.0.0.0 for all of its addresses)")
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return f"cannot listen on port {port}: ports below 1024 need administrator rights; pick another --port"
    return f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port"


def serve(loaded: LoadedModel, sock: socket.socket, options: ServerOptions) -> int:
    """Serve on `sock` (from `bind`) until Ctrl+C or SIGTERM; the address goes to stdout once it listens."""
    import uvicorn

    if not is_loopback(options.host) and not options.api_key:
        sock.close()
        raise UsageError(f"gpt2-desktop serve: --host {options.host} lets other computers in; give it an --api-key "
                         "too (or serve on 127.0.0.1)")
    connections = connection_limit(options.max_connections)
    backlog = min(128, connections)  # also how many asyncio accepts at a time, each holding a descriptor
    sock.listen(backlog)  # from here connections wait for the server instead of being refused
    bound = sock.getsockname()[1]
    shown = f"[{options.host}]" if ":" in options.host else options.host
    app_server = Server(loaded, options)

    class QuietExit(uvicorn.Server):
        """Ctrl+C or SIGTERM: stop every generation at once, send what was answered, and exit 0."""

        def handle_exit(self, sig, frame) -> None:
            self.force_exit = self.should_exit and sig == signal.SIGINT  # a second Ctrl+C: now
            self.should_exit = True
            app_server.halt_soon()

    config = uvicorn.Config(app_server.app(), log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                            proxy_headers=False,  # a client names itself by its socket, never by X-Forwarded-For
                            http=connection_class(connections, options.timeout), backlog=backlog,
                            timeout_keep_alive=options.timeout)
    budget = LogBudget()
    talkers = [logging.getLogger(name) for name in ("uvicorn.error", "asyncio")]
    for logger in talkers:
        logger.addFilter(budget)
    print(f"serving {loaded.name} at http://{shown}:{bound}/v1 (OpenAI-compatible; Ctrl+C stops)", flush=True)
    try:
        QuietExit(config).run(sockets=[sock])
    finally:
        for logger in talkers:
            logger.removeFilter(budget)
    print("stopped", file=sys.stderr, flush=True)
    return 0
