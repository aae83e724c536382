"""A message sink for the compat checks: plays the gateway's generic `http` provider.

The gateway POSTs {to, body, channel, message_id} to /messages; the tests read them back with
GET /messages (a JSON list, oldest first). Listens on 127.0.0.1 only; prints its port on the
first line of standard output so the runner can read it.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGES = []
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
            self._answer(200, list(MESSAGES))

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()
