"""What the corpus's workloads do from an interpreter: `server.py MODE ARGS`.

Runs inside a container with `--network none`: loopback only, so every
connect to another address fails at once (ENETUNREACH) after the agent's
cgroup hook has seen it. Exits 0 when the mode did what it should.
"""
import errno
import os
import socket
import subprocess
import sys


def connect(host, port, kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(1)
    try:
        s.connect((host, port))
    except OSError as e:
        # Refused on loopback, unreachable elsewhere: both were attempts.
        if e.errno not in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH):
            raise
    finally:
        s.close()


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "connect":
        # connect HOST PORT...
        for port in args[1:]:
            connect(args[0], int(port))
    elif mode == "scan":
        # scan HOST FIRST COUNT
        first, count = int(args[1]), int(args[2])
        for port in range(first, first + count):
            connect(args[0], port)
    elif mode == "listen":
        # A server: listen on loopback, take one connection from itself.
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 8080))
        srv.listen(8)
        c = socket.create_connection(("127.0.0.1", 8080), timeout=2)
        peer, _ = srv.accept()
        c.sendall(b"GET /healthz\n")
        assert peer.recv(64)
        for s in (peer, c, srv):
            s.close()
    elif mode == "inject":
        # A request handler running a shell: command injection.
        sys.exit(os.system("id > /dev/null"))
    elif mode == "spawn":
        # A server running a program (not a shell) as its job.
        subprocess.run(["/bin/true"], check=True)
    elif mode == "memfd":
        # Fileless: a copy of busybox in memory, executed from its descriptor.
        fd = os.memfd_create("payload", 0)
        with open("/bin/busybox", "rb") as f:
            os.write(fd, f.read())
        os.execv(f"/proc/self/fd/{fd}", ["true"])
    elif mode == "execv":
        # The benign twin: exec a program of the image.
        os.execv("/bin/true", ["true"])
    else:
        sys.exit(f"unknown mode {mode}")


main()
