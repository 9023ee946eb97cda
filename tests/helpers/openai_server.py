"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions schema and injects
faults on demand (HTTP status, delay, malformed or cut-off replies). Nothing beyond 127.0.0.1."""
import dataclasses
import http.server
import json
import threading
import time
import zlib


@dataclasses.dataclass
class Reply:
    content: str = "4"
    status: int = 200
    delay_s: float = 0.0
    headers: dict = dataclasses.field(default_factory=dict)
    raw: bytes | None = None          # sent instead of a well-formed completion
    declared_length: int | None = None  # a Content-Length larger than the body cuts the reply


def completion(content: str) -> bytes:
    return json.dumps({"id": "cmpl-1", "object": "chat.completion", "model": "judge",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}],
                       }).encode()


class FakeOpenAIServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviour = lambda index, body: Reply()
        self.lock = threading.Lock()
        self.requests, self.paths, self.auth, self.times = [], [], [], []
        self.in_flight = self.max_in_flight = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address):
        pass  # a client that timed out and hung up is expected here


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/v1/models":
            self._send(200, {}, json.dumps({"object": "list", "data": [{"id": "judge"}]}).encode())
        else:
            self._send(404, {}, b"{}")

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            index = len(server.requests)
            server.requests.append(body)
            server.paths.append(self.path)
            server.auth.append(self.headers.get("Authorization"))
            server.times.append(time.monotonic())
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            reply = server.behaviour(index, body)
            time.sleep(reply.delay_s)
        finally:
            # Before the reply is written: a client that has read it may send its next request
            # at once, and must not find this one still counted.
            with server.lock:
                server.in_flight -= 1
        payload = reply.raw if reply.raw is not None else completion(reply.content)
        self._send(reply.status, reply.headers, payload, reply.declared_length)

    def _send(self, status, headers, payload, declared_length=None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(declared_length or len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if declared_length:
            self.close_connection = True


def answer_in_kind(index, body) -> "Reply":
    """A well-behaved judge: "yes" to agreement questions, "4" to CA scores."""
    return Reply("yes" if body["messages"][-1]["content"].rstrip().endswith("yes or no.")
                 else "4")


def start_server(behaviour=None) -> FakeOpenAIServer:
    server = FakeOpenAIServer()
    if behaviour is not None:
        server.behaviour = behaviour
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def stop_server(server: FakeOpenAIServer) -> None:
    server.shutdown()
    server.server_close()


def varied_judge(index, body):
    """Agreement on about a third of the checks and CA scores 1-5, each fixed by the request's
    text: dialogues run to different lengths and groups get rewards that differ."""
    text = body["messages"][-1]["content"]
    code = zlib.crc32(text.encode())
    if text.rstrip().endswith("yes or no."):
        return Reply("yes" if code % 3 == 0 else "no")
    return Reply(str(1 + code % 5))
