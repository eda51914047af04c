"""A real gRPC server (python3-grpcio) for the integration tests.

usage: grpc_server.py PORT NAME

Serves, on 127.0.0.1:PORT, the service test.Echo with raw bytes as messages:
  Unary(m) -> NAME + ":" + m; an m of "sleep:MS" waits MS ms first, one of
  "fail:CODE" fails with that status code
  ServerStream(n) -> n messages "0".."n-1"
  ClientStream(m...) -> the messages joined with ","
  Bidi(m...) -> each message echoed upper-cased, as it comes
  SetServing(b"0" or b"1") -> b"ok": what the health service answers
  Metadata(m) -> JSON {"name": NAME, "metadata": {key: [values]}}: the
  metadata the call arrived with
and grpc.health.v1.Health/Check, SERVING until told otherwise (for the
server as a whole and for "test.Echo"). Writes "ready" to stdout once
serving.
"""
import json
import sys
import threading
import time
from concurrent import futures

import grpc

port, name = int(sys.argv[1]), sys.argv[2].encode()
CODES = {code.value[0]: code for code in grpc.StatusCode}
serving = threading.Event()
serving.set()


def unary(request: bytes, context) -> bytes:
    if request.startswith(b"sleep:"):
        time.sleep(int(request[6:]) / 1000)
    elif request.startswith(b"fail:"):
        context.abort(CODES[int(request[5:])], "failed as asked")
    return name + b":" + request


def server_stream(request: bytes, context):
    for i in range(int(request)):
        yield str(i).encode()


def client_stream(requests, context) -> bytes:
    return b",".join(requests)


def bidi(requests, context):
    for m in requests:
        yield m.upper()


def metadata(request: bytes, context) -> bytes:
    seen: dict[str, list[str]] = {}
    for key, value in context.invocation_metadata():
        seen.setdefault(key, []).append(value if isinstance(value, str) else value.decode(errors="replace"))
    return json.dumps({"name": name.decode(), "metadata": seen}).encode()


def set_serving(request: bytes, context) -> bytes:
    (serving.set if request == b"1" else serving.clear)()
    return b"ok"


def health_check(request: bytes, context) -> bytes:
    # HealthCheckRequest{service = 1}; HealthCheckResponse{status = 1}.
    service = request[2:] if request[:1] == b"\x0a" else b""
    if service not in (b"", b"test.Echo"):
        return b"\x08\x03"  # SERVICE_UNKNOWN
    return b"\x08\x01" if serving.is_set() else b"\x08\x02"


def raw(kind, fn):
    return kind(fn, request_deserializer=None, response_serializer=None)


echo = grpc.method_handlers_generic_handler("test.Echo", {
    "Unary": raw(grpc.unary_unary_rpc_method_handler, unary),
    "ServerStream": raw(grpc.unary_stream_rpc_method_handler, server_stream),
    "ClientStream": raw(grpc.stream_unary_rpc_method_handler, client_stream),
    "Bidi": raw(grpc.stream_stream_rpc_method_handler, bidi),
    "SetServing": raw(grpc.unary_unary_rpc_method_handler, set_serving),
    "Metadata": raw(grpc.unary_unary_rpc_method_handler, metadata),
})
health = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
    "Check": raw(grpc.unary_unary_rpc_method_handler, health_check),
})

server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
server.add_generic_rpc_handlers((echo, health))
server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
print("ready", flush=True)
server.wait_for_termination()
