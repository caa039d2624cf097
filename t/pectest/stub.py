"""A listening socket whose every connection is served on a thread of its own:
the base of the small servers a test stands up for a peer (an SMTP server that
refuses, a milter that records).

    class Refuser(stub.Server):
        def _serve(self, conn): ...
    s = Refuser(socket.AF_INET, (ip, 0)); s.address; s.stop()
"""
import socket
import threading


class Server:
    def __init__(self, family, address, backlog=8):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(address)
        self.address = self.sock.getsockname()
        self._backlog = backlog

    def listen(self):
        """Start accepting (after the subclass has set up what _serve reads)."""
        self.sock.listen(self._backlog)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        raise NotImplementedError
