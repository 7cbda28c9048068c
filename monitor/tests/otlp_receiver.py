"""An OTLP/HTTP logs receiver for monitor/tests/otlp.rs.

It decodes every request with the official protobuf definitions (PyPI's
`opentelemetry-proto`): `application/x-protobuf` bodies with
ExportLogsServiceRequest.ParseFromString, `application/json` bodies with
google.protobuf.json_format.Parse, which refuses unknown fields and wrong
types, so OTLP/JSON that a collector would not read is refused here too.
Each decoded request is written, as the canonical JSON mapping, one per
line to OUT. Usage: otlp_receiver.py PORT_FILE OUT
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

PORT_FILE, OUT = sys.argv[1], sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        kind = self.headers.get("Content-Type", "")
        req = ExportLogsServiceRequest()
        try:
            if self.path != "/v1/logs":
                raise ValueError(f"path {self.path}")
            if kind == "application/x-protobuf":
                req.ParseFromString(body)
            elif kind == "application/json":
                json_format.Parse(body, req)
            else:
                raise ValueError(f"content type {kind!r}")
        except Exception as e:  # noqa: BLE001 - any decode failure is a 400
            self.send_response(400)
            self.end_headers()
            self.wfile.write(str(e).encode())
            sys.stderr.write(f"otlp_receiver: refused: {e}\n")
            return
        with open(OUT, "a") as f:
            line = json_format.MessageToJson(req, indent=None)
            f.write(kind + "\t" + line + "\n")
        resp = ExportLogsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(resp)))
        self.end_headers()
        self.wfile.write(resp)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os  # noqa: E402

os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
