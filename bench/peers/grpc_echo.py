#!/usr/bin/python3
"""The gRPC server of bench/grpc.py: test.Echo/Unary answers its request
message as it came, over h2c. Usage: grpc_echo.py PORT"""

import sys
from concurrent import futures

import grpc


def main() -> None:
    port = int(sys.argv[1])
    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
