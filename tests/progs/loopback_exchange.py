# A short TCP exchange on loopback: 1 MiB to a server thread, its byte
# count back. The network case of tests/integration/false_positive_test.cpp.
import socket, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
def serve():
    c, _ = srv.accept()
    n = 0
    while True:
        b = c.recv(65536)
        if not b: break
        n += len(b)
    c.sendall(str(n).encode()); c.close()
t = threading.Thread(target=serve); t.start()
cl = socket.create_connection(("127.0.0.1", port))
cl.sendall(b"x" * (1 << 20)); cl.shutdown(socket.SHUT_WR)
print(cl.recv(100).decode()); cl.close(); t.join(); srv.close()
