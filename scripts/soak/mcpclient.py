"""A small MCP-over-HTTP client on raw sockets (Python stdlib only), for the soak test and the
reliability cases: Streamable HTTP sessions (POST /mcp answered as JSON or as an SSE stream, GET /mcp)
and legacy SSE sessions (GET /sse + POST /message). Raw sockets, so a test can stop reading, trickle
bytes, or drop a connection at any point, which no ordinary HTTP library allows.
"""

import json
import socket
import threading
import time

PROTOCOL = "2025-06-18"


class HttpError(Exception):
    """The server answered with a status that is not what the exchange needed."""

    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


class Body:
    """Reads a response body (Content-Length, chunked, or until close) line by line or whole."""

    def __init__(self, rfile, headers):
        self.rfile = rfile
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self.left = int(length) if length is not None and not self.chunked else None
        self.buf = b""
        self.done = False

    def _fill(self):
        """Reads more body bytes into buf; False at the end of the body."""
        if self.done:
            return False
        if self.chunked:
            size_line = self.rfile.readline()
            if not size_line:
                raise ConnectionError("connection closed mid-body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return False
            data = self.rfile.read(size + 2)
            if len(data) < size + 2:
                raise ConnectionError("connection closed mid-chunk")
            self.buf += data[:size]
            return True
        if self.left is not None:
            if self.left == 0:
                self.done = True
                return False
            data = self.rfile.read1(min(self.left, 65536))
            if not data:
                raise ConnectionError("connection closed mid-body")
            self.left -= len(data)
            self.buf += data
            return True
        data = self.rfile.read1(65536)
        if not data:
            self.done = True
            return False
        self.buf += data
        return True

    def readline(self):
        """The next line with its newline; b"" at the end."""
        while b"\n" not in self.buf:
            if not self._fill():
                line, self.buf = self.buf, b""
                return line
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_all(self):
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def events(self):
        """SSE events as (event, data) until the body ends."""
        name, data = None, []
        while True:
            line = self.readline()
            if not line:
                return
            line = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if not line:
                if data:
                    yield name or "message", "\n".join(data)
                name, data = None, []
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":
                    data.append(value)
                elif field == "event":
                    name = value


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def is_stream(self):
        return self.headers.get("content-type", "").startswith("text/event-stream")


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port, timeout=30.0):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def send(self, method, path, headers=None, body=b""):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def read_head(self):
        status_line = self.rfile.readline()
        if not status_line:
            raise ConnectionError("connection closed before the response")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = self.rfile.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return Response(status, headers, Body(self.rfile, headers))

    def request(self, method, path, headers=None, body=b""):
        self.send(method, path, headers, body)
        return self.read_head()

    def close(self):
        # Shut the socket down first: that wakes a thread blocked reading rfile, whose lock close() needs.
        for closer in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.rfile.close, self.sock.close):
            try:
                closer()
            except OSError:
                pass


def rpc(id_, method, params=None):
    msg = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method, params=None):
    msg = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


INIT_PARAMS = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}


class StreamableSession:
    """A Streamable HTTP session on /mcp (or a profile's /mcp/<name>: `path`) over one keep-alive
    connection (reopened when dropped)."""

    def __init__(self, host, port, headers=None, timeout=90.0, path="/mcp"):
        self.host, self.port, self.timeout, self.path = host, port, timeout, path
        self.extra = dict(headers or {})
        self.conn = None
        self.session = None

    def _conn(self):
        if self.conn is None:
            self.conn = Connection(self.host, self.port, self.timeout)
        return self.conn

    def headers(self):
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **self.extra}
        if self.session:
            h["Mcp-Session-Id"] = self.session
            h["MCP-Protocol-Version"] = PROTOCOL
        return h

    def post(self, msg):
        """Posts one message; returns the Response (body unread)."""
        try:
            return self._conn().request("POST", self.path, self.headers(), json.dumps(msg).encode())
        except (ConnectionError, OSError):
            self.drop()
            raise

    def initialize(self):
        resp = self.post(rpc(0, "initialize", INIT_PARAMS))
        body = resp.body.read_all()
        if resp.status != 200:
            raise HttpError(resp.status, body)
        self.session = resp.headers.get("mcp-session-id")
        if resp.is_stream():
            raise HttpError(resp.status, b"initialize answered as a stream")
        answer = json.loads(body)
        resp = self.post(notification("notifications/initialized"))
        resp.body.read_all()
        return answer

    def call(self, id_, method, params=None, on_message=None):
        """Sends a request and returns its response message; every other message on the way goes to
        on_message. Raises HttpError for a non-200 answer."""
        resp = self.post(rpc(id_, method, params))
        if resp.status != 200:
            raise HttpError(resp.status, resp.body.read_all())
        if not resp.is_stream():
            return json.loads(resp.body.read_all())
        answer = None
        for _, data in resp.body.events():
            msg = json.loads(data)
            if "method" not in msg and msg.get("id") == id_:
                if answer is not None:
                    raise AssertionError(f"two responses to request {id_}")
                answer = msg
                break
            if on_message:
                on_message(msg)
        if answer is None:
            raise ConnectionError("stream ended without the response")
        resp.body.read_all()
        return answer

    def send_and_drop(self, id_, method, params=None, after=0.0):
        """Posts a request, waits `after` seconds, then closes the connection without reading."""
        self._conn().send("POST", self.path, self.headers(), json.dumps(rpc(id_, method, params)).encode())
        time.sleep(after)
        self.drop()

    def delete(self):
        if not self.session:
            return None
        resp = self._conn().request("DELETE", self.path, self.headers())
        resp.body.read_all()
        return resp.status

    def drop(self):
        if self.conn:
            self.conn.close()
            self.conn = None


class LegacySession:
    """A legacy SSE session: GET /sse read by a thread; requests posted to the endpoint it names.
    Responses are matched to requests by id: `wait(id)` returns the one response, and a second response
    to the same id, or one to an id never sent, is counted in `duplicates` / `strays`."""

    def __init__(self, host, port, headers=None, timeout=90.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.extra = dict(headers or {})
        self.stream = Connection(host, port, timeout)
        resp = self.stream.request("GET", "/sse", {"Accept": "text/event-stream", **self.extra})
        if resp.status != 200:
            body = resp.body.read_all()
            self.stream.close()
            raise HttpError(resp.status, body)
        self.events = resp.body.events()
        name, data = next(self.events)
        if name != "endpoint":
            raise AssertionError(f"first SSE event is {name!r}, not endpoint")
        self.endpoint = data
        self.lock = threading.Condition()
        self.answers = {}      # id -> response message
        self.sent = set()
        self.duplicates = 0
        self.strays = 0
        self.notifications = []
        self.closed = False
        self.post_conn = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        try:
            for _, data in self.events:
                msg = json.loads(data)
                with self.lock:
                    if "method" in msg:
                        self.notifications.append(msg)
                    elif msg.get("id") in self.answers:
                        self.duplicates += 1
                    elif msg.get("id") not in self.sent:
                        self.strays += 1
                    else:
                        self.answers[msg.get("id")] = msg
                    self.lock.notify_all()
        except (OSError, ValueError, ConnectionError):
            pass
        with self.lock:
            self.closed = True
            self.lock.notify_all()

    def post(self, msg):
        if "id" in msg:
            with self.lock:
                self.sent.add(msg["id"])
        for attempt in (0, 1):
            try:
                if self.post_conn is None:
                    self.post_conn = Connection(self.host, self.port, self.timeout)
                resp = self.post_conn.request(
                    "POST", self.endpoint, {"Content-Type": "application/json", **self.extra}, json.dumps(msg).encode()
                )
                body = resp.body.read_all()
                if resp.headers.get("connection", "").lower() == "close":
                    self.post_conn.close()
                    self.post_conn = None
                return resp.status, body
            except (ConnectionError, OSError):
                if self.post_conn:
                    self.post_conn.close()
                self.post_conn = None
                if attempt:
                    raise

    def wait(self, id_, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while id_ not in self.answers and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(left)
            return self.answers.get(id_)

    def initialize(self):
        status, body = self.post(rpc(0, "initialize", {**INIT_PARAMS, "protocolVersion": "2024-11-05"}))
        if status != 202:
            raise HttpError(status, body)
        answer = self.wait(0, 30)
        if answer is None:
            raise ConnectionError("no initialize response on the stream")
        self.post(notification("notifications/initialized"))
        return answer

    def close(self):
        self.stream.close()
        if self.post_conn:
            self.post_conn.close()
        self.reader.join(5)


def get_json(host, port, path, headers=None, timeout=10.0):
    conn = Connection(host, port, timeout)
    try:
        resp = conn.request("GET", path, {"Connection": "close", **(headers or {})})
        body = resp.body.read_all()
        return resp.status, (json.loads(body) if body[:1] in (b"{", b"[") else body)
    finally:
        conn.close()
