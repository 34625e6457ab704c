# The seed article's four stories on loopback, for the recorded trace beside this file
# (docs/examples/trace.jsonl), whose records docs/events.md shows. Ports A..D, one per
# story; a Python HTTP/1.1 server (keep-alive, 1 s idle timeout) and client.
#   tracer --port A --port B --port C --port D --emit events > trace.jsonl &
#   python3 stories.py A B C D
import http.client, http.server, os, signal, socket, sys, threading, time

A, B, C, D = (int(p) for p in sys.argv[1:5])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 1  # idle keep-alive connections are closed after 1 s
    delay = 0.0

    def do_GET(self):
        time.sleep(self.delay)
        body = b"hello\n" * 20
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(port, delay=0.0):
    handler = type("H", (Handler,), {"delay": delay})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if len(sys.argv) > 5 and sys.argv[5] == "serve":
    # Story 4's server, in a process of its own to be killed.
    serve(D, delay=60)
    time.sleep(3600)

# 1. Keep-alive reuse: three requests on one connection, the server's idle timeout closes it.
serve(A)
c = http.client.HTTPConnection("127.0.0.1", A)
for _ in range(3):
    c.request("GET", "/")
    c.getresponse().read()
    time.sleep(0.02)
assert c.sock.recv(1) == b""  # the server closed it
c.close()

# 2. The client closes right after its response.
serve(B)
c = http.client.HTTPConnection("127.0.0.1", B)
c.request("GET", "/")
c.getresponse().read()
c.close()

# 3. A slow response (3 s) while the client's kernel probes every second.
serve(C, delay=3)
c = http.client.HTTPConnection("127.0.0.1", C)
c.connect()
c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
c.request("GET", "/slow")
c.getresponse().read()
c.close()

# 4. The server process is killed while the request hangs; the client then asks again.
import subprocess
server = subprocess.Popen([sys.executable, __file__, *sys.argv[1:5], "serve"])
while True:
    try:
        s = socket.create_connection(("127.0.0.1", D))
        break
    except ConnectionRefusedError:
        time.sleep(0.05)
s.sendall(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
time.sleep(0.5)
server.send_signal(signal.SIGKILL)
server.wait()
assert s.recv(100) == b""  # the killed process's socket was closed: EOF
s.sendall(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")
time.sleep(0.1)
try:
    s.recv(100)
except ConnectionResetError:
    pass
s.close()

# 5. A response retransmitted: nftables drops it on its way in, for a while.
c = http.client.HTTPConnection("127.0.0.1", B)
c.connect()
nft = lambda *args: subprocess.run(["nft", *args], check=True)
nft("add table inet stories")
nft("add chain inet stories input { type filter hook input priority 0; }")
nft(f"add rule inet stories input tcp sport {B} tcp flags & psh == psh drop")
c.request("GET", "/")
time.sleep(0.5)
nft("delete table inet stories")
c.getresponse().read()
c.close()
time.sleep(1.5)
