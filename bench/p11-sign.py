"""P-256 signatures through p11-kit-client.so for bench/hsm-sign.ts (issue #26).

Usage: P11_KIT_SERVER_ADDRESS=unix:path=SOCKET SIGNET_BENCH_PIN=PIN \
         /usr/bin/python3 bench/p11-sign.py MODULE LABEL SECONDS

One PKCS#11 session, logged in once, signing a 32-octet SHA-256 digest with CKM_ECDSA in a
loop, one signature at a time: C_SignInit then C_Sign into a buffer already the signature's size,
two round trips per signature, as libp11 (OpenSSL's engine, so nginx) does. PyKCS11's high-level
sign() would ask for the size first (three round trips), so the low-level calls are used.
Prints JSON: signatures made and the seconds the loop took (Python's start-up is not counted).
"""
import hashlib
import json
import os
import sys
import time

import PyKCS11

module, label, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
lib = PyKCS11.PyKCS11Lib()
lib.load(module)
session = lib.openSession(lib.getSlotList(tokenPresent=True)[0])
session.login(os.environ["SIGNET_BENCH_PIN"])
key = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, label)])[0]
mechanism = PyKCS11.Mechanism(PyKCS11.CKM_ECDSA, None).to_native()
digest = PyKCS11.ckbytelist(hashlib.sha256(b"a to-be-signed certificate, say").digest())
low = session.lib


def sign_once():
    signature = PyKCS11.ckbytelist([0] * 64)
    rv = low.C_SignInit(session.session, mechanism, key)
    if rv != PyKCS11.CKR_OK:
        raise PyKCS11.PyKCS11Error(rv)
    rv = low.C_Sign(session.session, digest, signature)
    if rv != PyKCS11.CKR_OK:
        raise PyKCS11.PyKCS11Error(rv)
    return signature


for _ in range(200):  # warm up: connection, key caches
    sign_once()
count = 0
started = time.perf_counter()
end = started + seconds
while time.perf_counter() < end:
    for _ in range(16):
        sign_once()
    count += 16
print(json.dumps({"signatures": count, "seconds": time.perf_counter() - started}))
