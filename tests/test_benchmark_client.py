"""The load benchmarks' HTTP client: the form it sends, and a keep-alive connection the server dropped."""

from __future__ import annotations

import email.parser
import email.policy
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.client import FormClient, NoAnswerError, form_body
from benchmarks.common import free_port


class _DroppingHandler(BaseHTTPRequestHandler):
    """Answers each POST with its own form's file, promising keep-alive, then drops the connection."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
        )
        (part,) = message.iter_parts()
        answer = f"{part.get_param('name', header='content-disposition')}:{part.get_filename()}:".encode()
        answer += part.get_payload(decode=True)
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.close_connection = True  # without saying so: the client finds out on its next request

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def dropping_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DroppingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_posts_the_file_as_a_form_and_reconnects_after_a_dropped_connection(dropping_server: str) -> None:
    photo = bytes(range(256)) * 8  # every byte value, CR and LF included
    with FormClient(dropping_server, timeout_s=10) as client:
        answers = [
            client.post("/api/gender", form_body(field="image", filename=f"{i}.jpg", data=photo)) for i in range(3)
        ]
    assert answers == [(200, f"image:{i}.jpg:".encode() + photo) for i in range(3)]


def test_no_server_is_no_answer() -> None:
    with FormClient(f"http://127.0.0.1:{free_port()}", timeout_s=2) as client, pytest.raises(NoAnswerError):
        client.post("/api/gender", form_body(field="image", filename="a.jpg", data=b"x"))


def test_refuses_what_it_cannot_reach() -> None:
    with pytest.raises(ValueError, match="http://"):
        FormClient("https://example.org", timeout_s=1)
