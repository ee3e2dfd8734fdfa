"""`gpt2-desktop serve`: an OpenAI-compatible HTTP server on one loaded model (Starlette on uvicorn).

One engine thread runs the requests one after another, in the order they came (a bounded queue; 429
when it is full); the event loop only reads bodies, checks them (`engine.tooling.openai_api`) and
writes answers, so `/health` and `/v1/models` answer while a generation runs. A client that goes
away has its generation cancelled before the next token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.core.loader import LoadedModel
from engine.errors import EngineError, UsageError
from engine.inference.chat import Turn, chat_style, format_chat
from engine.inference.generate import Done, Generator, TokenEvent
from engine.inference.scoring import score_ids
from engine.tooling import openai_api as api
from engine.tooling.openai_api import ApiError, TokenInfo

_END = object()


@dataclass(frozen=True)
class ServerOptions:
    api_key: str | None = None
    allow_origins: tuple[str, ...] = ()
    queue_size: int = 32  # requests waiting behind the running one
    max_body_bytes: int = 8 * 2**20
    slide: bool = False  # let generations past the context window slide on instead of refusing them
    log_requests: bool = False  # one JSON line on stdout per finished request (the window's server panel reads them)


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
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise ApiError(429, f"The server is busy: {self.jobs.maxsize} requests are already waiting. "
                                "Try again shortly.", code="queue_full", kind="rate_limit_error") from None

    def stop(self) -> None:
        if self.running is not None:
            self.running.cancel.set()
        while True:
            try:
                self.jobs.get_nowait().cancel.set()
            except queue.Empty:
                break
        self.jobs.put(None)

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if job.cancel.is_set():
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
                traceback.print_exc()
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


class Server:
    """The HTTP side: routes, checks, and the shaping of answers."""

    def __init__(self, loaded: LoadedModel, options: ServerOptions):
        self.loaded = loaded
        self.options = options
        self.model_id = loaded.name
        self.engine: EngineThread | None = None
        self.vocab_size = loaded.config.vocab_size

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
        middleware = []
        if self.options.allow_origins:
            middleware.append(Middleware(CORSMiddleware, allow_origins=list(self.options.allow_origins),
                                         allow_methods=["GET", "POST", "OPTIONS"],
                                         allow_headers=["Authorization", "Content-Type"]))
        if self.options.log_requests:
            middleware.insert(0, Middleware(_RequestLog))
        handlers = {ApiError: self._api_error, HTTPException: self._http_error, Exception: self._crash}
        return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        self.engine = EngineThread(self.loaded, self.options.queue_size)
        yield
        self.engine.stop()

    @staticmethod
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @staticmethod
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            message = f"There is no {request.url.path} here: see GET /v1/models, POST /v1/completions, " \
                      "POST /v1/chat/completions and GET /health."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        else:
            message = str(exc.detail)
        return JSONResponse(ApiError(exc.status_code, message, code=str(exc.status_code)).body(),
                            status_code=exc.status_code, headers=exc.headers)

    @staticmethod
    async def _crash(request: Request, exc: Exception) -> Response:
        traceback.print_exception(exc)
        return JSONResponse(ApiError(500, "The server failed on this request; its console has the details.",
                                     kind="server_error", code="internal_error").body(), status_code=500)

    def _authorise(self, request: Request) -> None:
        key = self.options.api_key
        if key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "This server needs an API key: send the header 'Authorization: Bearer KEY'.",
                           code="missing_api_key")
        if not hmac.compare_digest(given.strip().encode(), key.encode()):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    async def _body(self, request: Request) -> dict:
        limit = self.options.max_body_bytes
        too_big = ApiError(413, f"The request body is larger than this server accepts ({limit:,} bytes).",
                           code="request_too_large")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise too_big if declared.isdigit() else ApiError(400, "Content-Length must be a number of bytes.")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise too_big
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
        planned = [self._plan(prompt, req.sampling.max_tokens, echo=req.echo) for prompt in req.prompts]
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
        planned = self._plan(prompt.text, req.sampling.max_tokens, chat=True)
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

    def _plan(self, prompt: str | list[int], max_tokens: int | None, echo: bool = False,
              chat: bool = False) -> Planned:
        tokenizer = self.loaded.tokenizer
        if isinstance(prompt, str):
            ids, text = tokenizer.encode(prompt), prompt
        else:
            ids, text = prompt, tokenizer.decode(prompt)
        window = self.loaded.context_window
        if max_tokens is None:  # chat's default: what the window leaves
            max_tokens = max(0, window - len(ids)) if not self.options.slide else 256
            if max_tokens == 0:
                raise ApiError(400, f"This model's maximum context length is {window} tokens, and the messages "
                                    f"take {len(ids)}: shorten them or set 'max_tokens'.",
                               param="messages", code="context_length_exceeded")
        if not self.options.slide and len(ids) + max_tokens > window:
            where = "messages" if chat else "prompt"
            raise ApiError(400, f"This model's maximum context length is {window} tokens. However, you requested "
                                f"{len(ids) + max_tokens} tokens ({len(ids)} in the {where}, {max_tokens} for the "
                                "completion). Please shorten the prompt or lower 'max_tokens'.",
                           param="max_tokens" if max_tokens else where, code="context_length_exceeded")
        return Planned(ids, text, max_tokens)

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
    """A job's items for an answer sent at the end, cancelling the job if the client goes away."""
    items = job.items()
    try:
        while True:
            task = asyncio.ensure_future(items.__anext__())
            while not task.done():
                await asyncio.wait([task], timeout=0.25)
                if not task.done() and await request.is_disconnected():
                    task.cancel()
                    job.cancel.set()
                    return
            try:
                yield task.result()
            except StopAsyncIteration:
                return
    finally:
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
        model = self.server.model_id
        last = len(self.texts) - 1
        async for piece in job.items():
            text, tokens = self._take(piece)
            if piece.done is not None:
                extra = {"usage": self._usage()} if piece.index == last else {}
                yield api.envelope("text_completion", self.id, model, [
                    {"index": piece.index, "text": "", "logprobs": None,
                     "finish_reason": self.finish[piece.index]}], **extra)
            elif text or (tokens and self.req.logprobs is not None):
                yield api.envelope("text_completion", self.id, model, [
                    {"index": piece.index, "text": text, "logprobs": self._logprobs(piece.index, tokens),
                     "finish_reason": None}])
        if self.req.sampling.include_usage:
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
        async for piece in job.items():
            if not started[piece.index]:
                started[piece.index] = True
                yield api.envelope(kind, self.id, model, [{"index": piece.index, "logprobs": None,
                                                           "delta": {"role": "assistant", "content": ""},
                                                           "finish_reason": None}])
            text, tokens = self._take(piece)
            if piece.done is not None:
                extra = {"usage": self._usage()} if piece.index == last else {}
                yield api.envelope(kind, self.id, model, [{"index": piece.index, "delta": {}, "logprobs": None,
                                                           "finish_reason": self.finish[piece.index]}], **extra)
            elif text or tokens:
                logprobs = api.chat_logprobs(tokens) if self.req.logprobs else None
                yield api.envelope(kind, self.id, model, [{"index": piece.index, "delta": {"content": text},
                                                           "logprobs": logprobs, "finish_reason": None}])
        if self.req.sampling.include_usage:
            yield api.envelope(kind, self.id, model, [], usage=self._usage())


# running it

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(loaded: LoadedModel, host: str, port: int, options: ServerOptions) -> int:
    """Serve until Ctrl+C or SIGTERM; the address goes to stdout once the port is open."""
    import uvicorn

    if not is_loopback(host) and not options.api_key:
        raise UsageError(f"gpt2-desktop serve: --host {host} lets other computers in; give it an --api-key too "
                         "(or serve on 127.0.0.1)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # from here connections wait for the server instead of being refused
    except OSError as exc:
        sock.close()
        raise UsageError(f"gpt2-desktop serve: cannot listen on {host}:{port} ({exc.strerror}); "
                         "pick another --port") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    class QuietExit(uvicorn.Server):
        """Ctrl+C or SIGTERM: finish the answers under way (a few seconds at most) and exit 0."""

        def handle_exit(self, sig, frame) -> None:
            self.force_exit = self.should_exit and sig == signal.SIGINT  # a second Ctrl+C: now
            self.should_exit = True

    server = QuietExit(uvicorn.Config(Server(loaded, options).app(), log_level="warning",
                                           timeout_graceful_shutdown=3, access_log=False))
    print(f"serving {loaded.name} at http://{shown}:{bound}/v1 (OpenAI-compatible; Ctrl+C stops)", flush=True)
    server.run(sockets=[sock])
    print("stopped", file=sys.stderr, flush=True)
    return 0
