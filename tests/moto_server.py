#!/usr/bin/env python3
"""moto's S3 server, serving one request at a time: what the tests start (GP_MOTO_SERVER).

`moto_server` runs werkzeug with `threaded=True`, and moto checks a conditional write
(`If-None-Match: *`, `If-Match`) and then performs it without a lock
(moto/s3/responses.py, `put_object`): two concurrent conditional creates of one key can both
succeed there, which S3 never allows. Our commit protocol relies on S3's atomic conditional
writes, so the tests need a server that keeps them; serving requests one at a time does.
Without threads werkzeug speaks HTTP/1.0 and closes each connection, so one client cannot
hold the server.

usage: moto_server.py [-H HOST] [-p PORT]   (the same flags as moto_server)
"""

import argparse
import os

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        app,
        threaded=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
