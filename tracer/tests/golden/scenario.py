# Drives loopback TCP on ports A (listener) and B (nothing listening) for a golden trace.
import socket, struct, sys, time, subprocess
A, B, C = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", A)); lst.listen(16)
# 1. keep-alive: two request/response exchanges, client closes first.
c = socket.create_connection(("127.0.0.1", A)); s, _ = lst.accept()
for _ in range(2):
    c.sendall(b"GET / HTTP/1.1\r\n\r\n"); s.recv(100)
    time.sleep(0.01); s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"); c.recv(100)
    time.sleep(0.02)
c.close(); s.recv(10); s.close()
# 2. refused: nothing listens on B.
try:
    socket.create_connection(("127.0.0.1", B), timeout=2)
except OSError as e:
    print("refused:", e)
# 3. keepalive probes answered (server idle), then the server closes first.
c = socket.create_connection(("127.0.0.1", A)); s, _ = lst.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
time.sleep(2.6)
s.close(); c.recv(10); c.close()
# 4. abortive close (SO_LINGER 0) with a request left unanswered: reset sent/received.
c = socket.create_connection(("127.0.0.1", A)); s, _ = lst.accept()
c.sendall(b"GET /slow HTTP/1.1\r\n\r\n"); s.recv(100)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close(); time.sleep(0.05); s.close()
# 5. IPv6, server closes while the client still sends: the client gets a reset.
l6 = socket.socket(socket.AF_INET6); l6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l6.bind(("::1", C)); l6.listen(4)
c = socket.create_connection(("::1", C)); s, _ = l6.accept()
c.sendall(b"hello"); s.recv(10); s.close(); time.sleep(0.05)
try:
    c.sendall(b"more"); time.sleep(0.05); c.sendall(b"more")
except OSError as e:
    print("v6:", e)
c.close(); l6.close()
# 6. retransmits: drop the server's answers for a while.
c = socket.create_connection(("127.0.0.1", A)); s, _ = lst.accept()
subprocess.run(["nft", "add table inet golden"], check=True)
subprocess.run(["nft", "add chain inet golden out { type filter hook output priority 0; }"], check=True)
subprocess.run(["nft", f"add rule inet golden out tcp sport {A} drop"], check=True)
s.sendall(b"response while the wire drops it")
time.sleep(0.7)
subprocess.run(["nft", "delete table inet golden"], check=True)
c.recv(100); time.sleep(0.2)
c.close(); s.recv(10); s.close()
# 7. keepalive timeout: the server's answers to the probes are dropped.
c = socket.create_connection(("127.0.0.1", A)); s, _ = lst.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 1)
subprocess.run(["nft", "add table inet golden"], check=True)
subprocess.run(["nft", "add chain inet golden out { type filter hook output priority 0; }"], check=True)
subprocess.run(["nft", f"add rule inet golden out tcp sport {A} drop"], check=True)
try:
    c.recv(10)
except OSError as e:
    print("keepalive:", e)
subprocess.run(["nft", "delete table inet golden"], check=True)
c.close(); s.close()
lst.close()
time.sleep(0.3)
