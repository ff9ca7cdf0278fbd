#!/usr/bin/env python3
"""The demo's sample function: answers every request with a JSON echo of what reached it.

It shows what Envoy forwards after tokengate: the verified x-tokengate-* headers, and no token.
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        seen = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-")}
        body = json.dumps({"function": "hello", "path": self.path, "headers": seen}).encode() + b"\n"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description="tokengate demo function (echo)")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    ThreadingHTTPServer((args.listen, args.port), Echo).serve_forever()


if __name__ == "__main__":
    main()
