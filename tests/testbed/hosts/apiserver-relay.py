"""Relay one guest connection to the API server on the host's loopback.

QEMU's user-mode network runs this once per connection the guest opens to the guest-forwarded
address (``guestfwd=tcp:10.0.2.100:6443-cmd:python3 apiserver-relay.py HOST PORT``), with the
guest's side of the connection on stdin/stdout. Nothing is ever written to stderr: QEMU points
it at the same connection.
"""
import os
import selectors
import socket
import sys


def relay(host, port):
    try:
        upstream = socket.create_connection((host, port), timeout=10)
    except OSError:
        return 1
    upstream.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "guest")
    sel.register(upstream, selectors.EVENT_READ, "upstream")
    while True:
        for key, _events in sel.select():
            if key.data == "guest":
                data = os.read(0, 65536)
                if not data:
                    sel.unregister(0)
                    upstream.shutdown(socket.SHUT_WR)
                    continue
                upstream.sendall(data)
            else:
                data = upstream.recv(65536)
                if not data:
                    # Exiting closes every descriptor of the guest's side: the guest sees the end.
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]


if __name__ == "__main__":
    try:
        sys.exit(relay(sys.argv[1], int(sys.argv[2])))
    except (OSError, KeyboardInterrupt):
        sys.exit(1)
