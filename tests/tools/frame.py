#!/usr/bin/python3
"""Sends raw bytes to a Unix socket and reports the signer's reply, for
protocol-robustness tests.  Independent of Threshold's C code.

  frame.py SOCKET HEX         send HEX, print "ERROR <code> <message>",
                              "OK", or "CLOSED" (no reply)
  frame.py SOCKET sign PURPOSE PAYLOAD    a well-formed SIGN request
"""
import socket
import struct
import sys


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


def main():
    path = sys.argv[1]
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
    else:
        print("OK")


if __name__ == "__main__":
    main()
