"""`gpt2-desktop serve` against what a web page, a careless client or a hostile one can send: a real server
process on 127.0.0.1, raw HTTP (http.client, sockets) for what a client library would never send, the
official `openai` client where it fits."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time

import openai
import pytest

from tests.helpers import cli, running_server

FLOAT_FIELDS = ["temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"]
ENDPOINTS = {"/v1/completions": {"prompt": "Hello", "max_tokens": 2},
             "/v1/chat/completions": {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}}


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("hardening")) as proc:
        yield proc


def address(server) -> tuple[str, int]:
    host, port = server.base_url.split("//")[1].split("/")[0].rsplit(":", 1)
    return host, int(port)


def send(server, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """(status, headers, body) of one request sent exactly as given: no header is added but Host (which
    `headers` may replace) and Content-Length."""
    host, port = address(server)
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    headers = {"Host": f"{host}:{port}", **(headers or {})}
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def post(server, path: str, payload, headers: dict | None = None):
    """(status, parsed JSON) of a JSON POST; `payload` may be bytes already."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, _, data = send(server, "POST", path, body, {"Content-Type": "application/json", **(headers or {})})
    return status, json.loads(data)


def assert_error(answer: dict, param=None) -> dict:
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["type"]
    if param is not None:
        assert error["param"] == param and param in error["message"], error
    return error


def health(server) -> dict:
    return json.loads(send(server, "GET", "/health")[2])


# 1. a web page cannot drive the server

def test_a_page_of_another_name_or_origin_is_refused(server):
    host, port = address(server)
    body = json.dumps({"prompt": "Hello", "max_tokens": 2}).encode()
    # What a page of attacker.example sends once its name points at 127.0.0.1 (DNS rebinding): a simple
    # request that needs no preflight.
    page = {"Host": "attacker.example:8080", "Origin": "http://attacker.example:8080", "Content-Type": "text/plain"}
    status, headers, data = send(server, "POST", "/v1/completions", body, page)
    assert status == 403 and assert_error(json.loads(data))["code"] == "host_not_allowed"
    assert "--allow-host attacker.example" in json.loads(data)["error"]["message"]
    status, _, data = send(server, "GET", "/health", headers={"Host": "attacker.example"})
    assert status == 403
    # The right name, but from another page: refused, whatever the type.
    for kind in ("text/plain", "application/json"):
        status, _, data = send(server, "POST", "/v1/completions", body,
                               {"Origin": "http://attacker.example:8080", "Content-Type": kind})
        assert status == 403 and assert_error(json.loads(data))["code"] == "origin_not_allowed"
    # No page at all, but not JSON: 415.
    for kind in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
        status, _, data = send(server, "POST", "/v1/completions", body, kind)
        assert status == 415 and assert_error(json.loads(data))["code"] == "unsupported_media_type"
    # This server's own names, and its own origin, are answered.
    for name in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "127.0.0.2"):
        status, _, data = send(server, "POST", "/v1/completions", body,
                               {"Host": name, "Content-Type": "application/json; charset=utf-8"})
        assert status == 200, (name, data)
    status, _, _ = send(server, "POST", "/v1/completions", body,
                        {"Origin": f"http://{host}:{port}", "Content-Type": "application/json"})
    assert status == 200


def test_allow_host_and_allow_origin_let_those_in(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--allow-host", "my-box.lan",
                        "--allow-origin", "http://app.example") as server:
        body = json.dumps({"prompt": "Hello", "max_tokens": 2}).encode()
        status, headers, _ = send(server, "POST", "/v1/completions", body,
                                  {"Host": "my-box.lan:8080", "Origin": "http://app.example",
                                   "Content-Type": "application/json"})
        assert status == 200 and headers["access-control-allow-origin"] == "http://app.example"
        assert send(server, "GET", "/health", headers={"Host": "other.lan"})[0] == 403


def test_the_request_log_names_a_client_by_its_connection_never_by_what_it_claims(tiny_model_dir, tmp_path):
    """X-Forwarded-For and Forwarded are a client's word: a local program must not pass for another address."""
    with running_server(tiny_model_dir, tmp_path, "--log-requests") as server:
        status, _, _ = send(server, "GET", "/health", headers={"X-Forwarded-For": "203.0.113.9",
                                                                "Forwarded": "for=203.0.113.9"})
        assert status == 200
        logged = json.loads(server.stdout.readline())["request"]
        assert logged["client"].startswith("127.0.0.1:") and logged["path"] == "/health"


def test_the_trailing_slash_redirect_names_no_server(server):
    status, headers, _ = send(server, "GET", "/health/?x=1", headers={"Host": "localhost"})
    assert status == 307 and headers["location"] == "/health?x=1"
    status, headers, _ = send(server, "POST", "/v1/completions/", b"{}",
                              {"Host": "localhost", "Content-Type": "application/json"})
    assert status == 307 and headers["location"] == "/v1/completions"


# 5. client input is a 400, never a 500

@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_a_number_past_floats_range_is_a_400(server, path, field):
    for sign in ("", "-"):
        body = json.dumps(ENDPOINTS[path])[:-1] + f', "{field}": {sign}1{"0" * 400}}}'
        status, answer = post(server, path, body.encode())
        assert status == 400 and assert_error(answer, field)
        assert len(answer["error"]["message"]) < 300  # the 401 digits are not repeated back


LONE = "\ud800"
SURROGATES = [
    ("/v1/completions", {"prompt": LONE}, "prompt"),
    ("/v1/completions", {"prompt": ["fine", "a" + LONE]}, "prompt"),
    ("/v1/completions", {"prompt": "x", "model": LONE}, "model"),
    ("/v1/completions", {"prompt": "x", "stop": [LONE]}, "stop"),
    ("/v1/completions", {"prompt": "x", "user": LONE}, "user"),
    ("/v1/completions", {"prompt": "x", LONE: 1}, "\\ud800"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONE}]}, "messages[0].content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": LONE}]}]},
     "messages[0].content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "model": LONE}, "model"),
]


@pytest.mark.parametrize("path, body, param", SURROGATES, ids=[f"{p[0][4:]}-{p[2]}" for p in SURROGATES])
def test_a_lone_surrogate_is_a_400(server, path, body, param):
    status, answer = post(server, path, body)  # json.dumps writes it as the escape \ud800
    assert status == 400 and assert_error(answer)["param"] == param


def test_a_role_that_is_not_a_string_is_a_400(server):
    for role in (["user"], {"user": 1}, 3):
        status, answer = post(server, "/v1/chat/completions", {"messages": [{"role": role, "content": "x"}]})
        assert status == 400 and assert_error(answer, "messages[0].role")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_tiny_positive_settings_sample_safely(server, path):
    for extra in ({"temperature": 1e-300}, {"top_p": 1e-300}, {"repetition_penalty": 1e-300},
                  {"temperature": 5e-324, "top_p": 5e-324, "repetition_penalty": 5e-324, "min_p": 1.0}):
        status, answer = post(server, path, {**ENDPOINTS[path], "max_tokens": 4, **extra})
        assert status == 200, (extra, answer)
        assert answer["usage"]["completion_tokens"] >= 1


def test_tiny_positive_settings_on_the_command_line(tiny_model_dir):
    for flag in ("--temperature", "--top-p", "--repetition-penalty"):
        done = cli("generate", "--model", str(tiny_model_dir), "--prompt", "the the the", "--max-new-tokens", "4",
                   flag, "1e-300")
        assert done.returncode == 0 and "Traceback" not in done.stderr, (flag, done.stderr)


# 6. a client that goes away, and a server that is stopped

def test_a_non_streaming_request_is_cancelled_when_its_client_goes_away(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--slide") as server:
        host, port = address(server)
        body = json.dumps({"prompt": "Again and again", "max_tokens": 1_000_000}).encode()
        client = socket.create_connection((host, port))
        client.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.time() + 10
        while not health(server)["busy"] and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # it is well under way: hundreds of tokens
        client.close()
        gone = time.perf_counter()
        while health(server)["busy"] and time.perf_counter() - gone < 10:
            time.sleep(0.01)
        assert time.perf_counter() - gone < 1.0  # within a token or two, not after a million of them


def test_sigterm_stops_a_stream_at_once_and_exits_cleanly(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--slide") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        stream = iter(client.completions.create(model="tiny", prompt="Again", max_tokens=1_000_000, stream=True))
        next(stream)
        waiting = {}

        def wait_behind():
            try:
                client.completions.create(model="tiny", prompt="Behind", max_tokens=5)
            except openai.APIStatusError as exc:
                waiting["status"] = exc.status_code

        behind = threading.Thread(target=wait_behind)
        behind.start()
        deadline = time.time() + 10
        while health(server)["waiting"] < 1 and time.time() < deadline:
            time.sleep(0.02)
        stopped = time.perf_counter()
        server.send_signal(signal.SIGTERM)
        with pytest.raises(openai.APIError, match="shutting down"):
            for _ in stream:
                pass
        assert time.perf_counter() - stopped < 1.0
        behind.join(10)
        assert waiting.get("status") == 503
        assert server.wait(timeout=10) == 0
        assert time.perf_counter() - stopped < 2.5  # before uvicorn's 3 s of grace would run out
        errors = server.stderr.read()
        assert "Traceback" not in errors and "CancelledError" not in errors and "ASGI" not in errors, errors


# 7. big prompts do not block the event loop

def big_text(chars: int) -> str:
    words = ["once", "upon", "a", "time", "the", "fox", "ran", "into", "the", "wood"]
    return " ".join(words[i % len(words)] for i in range(chars // 4))[:chars]


def timed_while(server, work) -> tuple[object, float]:
    """What `work()` returns, and the slowest /health answer while it ran."""
    result, worst = {}, 0.0
    thread = threading.Thread(target=lambda: result.setdefault("value", work()))
    thread.start()
    while thread.is_alive():
        started = time.perf_counter()
        assert send(server, "GET", "/health")[0] == 200
        worst = max(worst, time.perf_counter() - started)
        time.sleep(0.01)
    thread.join()
    return result["value"], worst


def test_a_prompt_that_can_never_fit_is_refused_before_it_is_tokenised(server):
    text = big_text(7 * 2**20)
    started = time.perf_counter()
    (status, answer), worst = timed_while(server, lambda: post(server, "/v1/completions", {"prompt": text}))
    assert status == 400 and assert_error(answer, "prompt")["code"] == "context_length_exceeded"
    assert "characters" in answer["error"]["message"]
    assert time.perf_counter() - started < 2.0 and worst < 0.5  # tokenising it alone takes seconds
    status, answer = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": text}]})
    assert status == 400 and assert_error(answer, "messages")["code"] == "context_length_exceeded"


def test_a_long_prompt_is_tokenised_off_the_event_loop(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--slide") as server:  # it may slide: it is tokenised
        text = big_text(4 * 2**20)
        (status, answer), worst = timed_while(
            server, lambda: post(server, "/v1/completions", {"prompt": text, "max_tokens": 1}))
        assert status == 200 and answer["usage"]["prompt_tokens"] > 500_000
        assert worst < 1.0  # it took seconds to tokenise; /health kept answering


# 8. connections, timeouts and logs

def closed(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (waiting up to 5 s for it to); `sock` is closed here too."""
    sock.settimeout(5)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


def test_idle_connections_cannot_starve_the_server_or_fill_its_log(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--timeout", "2", open_files=256) as server:
        host, port = address(server)
        idle = []
        for _ in range(300):  # more than the process may have files open
            try:
                idle.append(socket.create_connection((host, port), timeout=5))
            except OSError:
                pass
        time.sleep(0.5)
        started = time.perf_counter()
        assert send(server, "GET", "/health")[0] == 200
        assert time.perf_counter() - started < 2.0
        half = socket.create_connection((host, port))
        half.sendall(b"GET /health HTTP/1.1\r\nHo")  # headers that never end
        assert closed(half)  # after --timeout
        assert all(closed(sock) for sock in idle)  # made room for others, or idle past --timeout
        assert send(server, "GET", "/health")[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        errors = server.stderr.read()
        assert len(errors) < 2000 and "Too many open files" not in errors, errors[:2000]


def test_a_slow_body_gets_408_and_an_abandoned_one_one_line(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, "--timeout", "1") as server:
        host, port = address(server)
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{\"prompt\": ")
        slow = socket.create_connection((host, port), timeout=10)
        slow.sendall(head)
        assert slow.recv(1000).startswith(b"HTTP/1.1 408")
        slow.close()
        for _ in range(3):
            gone = socket.create_connection((host, port))
            gone.sendall(head)
            time.sleep(0.2)
            gone.close()
        time.sleep(0.3)
        for _ in range(200):  # not HTTP at all: uvicorn's plain 400, and a log line each, up to a point
            bad = socket.create_connection((host, port), timeout=10)
            bad.sendall(b"NOT HTTP\r\n\r\n")
            bad.recv(1000)
            bad.close()
        assert send(server, "GET", "/health")[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        lines = server.stderr.read().splitlines()
        assert sum("went away" in line for line in lines) == 3
        assert "Traceback" not in "\n".join(lines) and len(lines) < 30, lines


# 13. the smaller items

def test_a_non_ascii_api_key_matches(tiny_model_dir, tmp_path):
    key = "clé-ü-鍵"
    with running_server(tiny_model_dir, tmp_path, "--api-key", key) as server:
        for given, status in ((key, 200), ("cle-u", 401)):
            code, _, _ = send(server, "GET", "/v1/models",
                              headers={"Authorization": b"Bearer " + given.encode("utf-8")})
            assert code == status


def test_a_host_that_is_not_this_computers_is_said_plainly(tiny_model_dir):
    for host, said in (("999.1.1.1", "is not an address ("), ("192.0.2.1", "is not an address of this computer")):
        result = cli("serve", "--model", str(tiny_model_dir), "--host", host, "--api-key", "k", "--port", "0")
        assert result.returncode == 2 and said in result.stderr, result.stderr
        assert "--port" not in result.stderr and "Traceback" not in result.stderr
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        result = cli("serve", "--model", str(tiny_model_dir), "--port", str(taken.getsockname()[1]))
    finally:
        taken.close()
    assert result.returncode == 2 and "pick another --port" in result.stderr


def test_a_prompt_of_token_ids_is_one_prompt_however_long(server):
    ids = [464, 1310] * 150  # 300 ids: more than a batch may hold prompts (256)
    status, answer = post(server, "/v1/completions", {"prompt": ids, "max_tokens": 0, "echo": True})
    # tiny's window is 128 tokens: what refuses it is the window, not the batch's limit
    assert status == 400 and assert_error(answer, "prompt")["code"] == "context_length_exceeded"


def test_logit_bias_keys_are_digits_and_include_usage_a_boolean(server):
    for key in (" 5 ", "５", "+5", "1_0", "٥", "5.0", ""):
        status, answer = post(server, "/v1/completions", {"prompt": "x", "logit_bias": {key: 1}})
        assert status == 400 and assert_error(answer, "logit_bias")
    for value in ("yes", 1, [True]):
        status, answer = post(server, "/v1/completions", {"prompt": "x", "stream": True,
                                                          "stream_options": {"include_usage": value}})
        assert status == 400 and assert_error(answer, "stream_options.include_usage")


def sse(server, path: str, body: dict) -> list[dict]:
    status, _, data = send(server, "POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert status == 200
    events = [line[6:] for line in data.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_usage_is_sent_once(server, path):
    body = {**ENDPOINTS[path], "max_tokens": 5, "n": 2, "stream": True}
    chunks = sse(server, path, {**body, "stream_options": {"include_usage": True}})
    with_usage = [c for c in chunks if c.get("usage")]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1] and chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 10
    plain = sse(server, path, body)  # as before: the usage with the last choice's end
    assert [c for c in plain if c.get("usage")] == [plain[-1]] and plain[-1]["choices"][0]["finish_reason"]


def test_the_remote_engine_reaches_the_server_by_name(server):
    _, port = address(server)
    result = cli("generate", "--remote", f"http://localhost:{port}/v1", "--prompt", "Hello", "--max-new-tokens", "3")
    assert result.returncode == 0, result.stderr
