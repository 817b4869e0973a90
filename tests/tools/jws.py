#!/usr/bin/python3
"""Independent JWS helper for tests (PyJWT and python3-cryptography, no
Threshold code).

  jws.py input HEADER_JSON CLAIMS_JSON   print the JWS signing input
  jws.py verify JWS PUBKEY_PEM ALG      verify; print the claims JSON
  jws.py now                            print the current unix time
"""
import base64
import json
import sys
import time

import jwt


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main():
    cmd = sys.argv[1]
    if cmd == "input":
        print(b64(sys.argv[2].encode()) + "." + b64(sys.argv[3].encode()))
    elif cmd == "verify":
        token, pem, alg = sys.argv[2], open(sys.argv[3], "rb").read(), sys.argv[4]
        out = jwt.api_jws.PyJWS().decode_complete(token, pem, algorithms=[alg])
        print(out["payload"].decode())
    elif cmd == "now":
        print(int(time.time()))
    else:
        sys.exit("unknown command")


if __name__ == "__main__":
    main()
