"""Run Milvus' C++ engine (the ``milvus`` binary bundled by milvus-lite 2.5) as a gRPC server.

Started by tests/test_milvus.py with the Python of ``.venv-milvus`` (``make milvus-engine``):
``python tests/milvus_engine.py DATA_DIR PORT``; prints ``ready`` and serves until killed.
"""

import os
import signal
import sys
import time

# the engine's own logs (glog: INFO, WARNING, ERROR files per start) go to the data directory,
# not to /tmp, where every run of the suite left three more
os.environ.setdefault("GLOG_log_dir", sys.argv[1])

from milvus_lite.server import Server  # noqa: E402

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that the engine is stopped below

server = Server(f"{sys.argv[1]}/engine.db", address=f"127.0.0.1:{sys.argv[2]}")
if not server.init() or not server.start():
    sys.exit("the Milvus engine did not start")
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    server.stop()
