#!/usr/bin/python3
"""Sends raw bytes to a Unix socket and reports the signer's reply, for
protocol-robustness tests.  Independent of Threshold's C code.

  frame.py SOCKET HEX         send HEX, print "ERROR <code> <message>",
                              "OK", or "CLOSED" (no reply)
  frame.py SOCKET sign PURPOSE PAYLOAD    a well-formed SIGN request
                              (an answer prints "OK ALG SIGNATURE-HEX")
  frame.py SOCKET stop PID HEX  send HEX, and the moment the reply is in,
                              SIGTERM PID with the connection still open;
                              print "STOPPED" if PID is gone within 3 s,
                              else "RUNNING"
"""
import os
import signal
import socket
import struct
import sys
import time


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def string(b):
    return struct.pack(">I", len(b)) + b


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (its parent has not waited yet) has stopped too.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def stop(path, pid, data):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(data)
    hdr = recv_exact(s, 4)
    recv_exact(s, struct.unpack(">I", hdr)[0])
    # The signer is still busy-polling after its reply: a signal landing
    # there must not be lost.  The open connection gives it nothing else
    # to wake up for.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if gone(pid):
            print("STOPPED")
            return
        time.sleep(0.05)
    print("RUNNING")


def main():
    path = sys.argv[1]
    if sys.argv[2] == "stop":
        stop(path, int(sys.argv[3]), bytes.fromhex(sys.argv[4]))
        return
    if sys.argv[2] == "sign":
        body = b"\x03" + string(sys.argv[3].encode()) + string(sys.argv[4].encode())
        data = struct.pack(">I", len(body)) + body
    else:
        data = bytes.fromhex(sys.argv[2])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    hdr = recv_exact(s, 4)
    if hdr is None:
        print("CLOSED")
        return
    (n,) = struct.unpack(">I", hdr)
    body = recv_exact(s, n)
    if body[0] == 0x81:
        code, mlen = struct.unpack(">II", body[1:9])
        print("ERROR", code, body[9:9 + mlen].decode())
    elif sys.argv[2] == "sign":
        (alen,) = struct.unpack(">I", body[1:5])
        alg = body[5:5 + alen].decode()
        (slen,) = struct.unpack(">I", body[5 + alen:9 + alen])
        print("OK", alg, body[9 + alen:9 + alen + slen].hex())
    else:
        print("OK")


if __name__ == "__main__":
    main()
