"""A git smart-HTTP request to the broker whose body is held back: its headers
(and the first HEAD bytes of its body) go at once, the rest DELAY seconds later.
Prints what the broker answered.  For the tests of requests whose body arrives
after their capability expired.

    git_late.py PORT CAPABILITY receive-pack|upload-pack DELAY HEAD PKT... [--pack FILE]

HEAD is a byte count, or pkt+N: every pkt-line and N bytes of the pack.

Each PKT is a pkt-line's payload, with the two-character escapes \\n and \\0
turned into a newline and a NUL byte, or "flush" for 0000; a pack file, if
given, follows the pkt-lines.
"""
import base64
import socket
import sys
import time


def pkt(text):
    if text == "flush":
        return b"0000"
    data = text.replace("\\n", "\n").replace("\\0", "\0").encode()
    return b"%04x" % (len(data) + 4) + data


def main(argv):
    args, pack = list(argv), b""
    if "--pack" in args:
        i = args.index("--pack")
        pack = open(args[i + 1], "rb").read()
        del args[i:i + 2]
    port, cap, service, delay, head = args[:5]
    pkts = b"".join(pkt(p) for p in args[5:])
    body = pkts + pack
    head = len(pkts) + int(head[4:]) if head.startswith("pkt+") else int(head)
    auth = base64.b64encode(("x-capability:" + cap).encode()).decode()
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
    s.sendall(("POST /acme/widgets.git/git-%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Type: application/x-git-%s-request\r\nContent-Length: %d\r\n"
               "Authorization: Basic %s\r\n\r\n" % (service, service, len(body), auth)
               ).encode() + body[:head])
    time.sleep(float(delay))
    s.sendall(body[head:])
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
            s.settimeout(2)     # the answer is in; a kept-alive connection stays open
    except socket.timeout:
        pass
    print(out.decode("latin-1"))


if __name__ == "__main__":
    main(sys.argv[1:])
