"""A message sink for the compat checks: plays the gateway's generic `http` provider and an SMTP
server.

The gateway POSTs {to, body, channel, message_id} to /messages; the tests read them back with
GET /messages (a JSON list, oldest first). Mails the gateway's `smtp` provider delivers are
parsed and listed by GET /mails ({to, subject, text, html}, oldest first). Listens on 127.0.0.1
only; prints the HTTP port on the first line of standard output and the SMTP port on the
second, so the runner can read them.
"""

import email
import email.policy
import json
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGES = []
MAILS = []
LOCK = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        with LOCK:
            MESSAGES.append(payload)
        self._answer(200, {"id": "sink-%d" % len(MESSAGES)})

    def do_GET(self):
        with LOCK:
            self._answer(200, list(MAILS if self.path.startswith("/mails") else MESSAGES))

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def parsed(recipients, data):
    """A received mail as the tests read it: recipient, decoded subject, text and HTML parts."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {
        "to": recipients[0] if recipients else "",
        "subject": str(message["subject"]),
        "text": text.get_content() if text else "",
        "html": html.get_content() if html else "",
    }


class SmtpSink(socketserver.StreamRequestHandler):
    """Just enough SMTP for one client: EHLO, MAIL, RCPT, DATA (dot-unstuffed), QUIT."""

    def handle(self):
        self.wfile.write(b"220 sink.test ESMTP\r\n")
        recipients = []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.strip().upper()
            if command.startswith((b"EHLO", b"HELO")):
                self.wfile.write(b"250 sink.test\r\n")
            elif command.startswith(b"RCPT TO:"):
                recipients.append(line.strip()[8:].strip(b" <>").decode())
                self.wfile.write(b"250 OK\r\n")
            elif command == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                data = bytearray()
                while True:
                    part = self.rfile.readline()
                    if not part or part in (b".\r\n", b".\n"):
                        break
                    data += part[1:] if part.startswith(b"..") else part
                with LOCK:
                    MAILS.append(parsed(recipients, bytes(data)))
                recipients = []
                self.wfile.write(b"250 queued\r\n")
            elif command == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # MAIL FROM, RSET, NOOP
                self.wfile.write(b"250 OK\r\n")


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    smtp = SmtpServer(("127.0.0.1", 0), SmtpSink)
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    print(f"{server.server_address[1]}\n{smtp.server_address[1]}", flush=True)
    sys.stdout.close()
    server.serve_forever()
