"""scripts/chaos's callers, receiver and ledger.

- `Receiver`: a local webhook gateway in its own process (HTTP/1.1 on asyncio) that logs
  every `webhook-id` it is sent with what it answered, and switches behaviour on request:
  ok (200), refuse (400), fail (503), stall (answers nothing until past the provider
  timeout). Run as `python3 chaoslib.py receive PORT LOG STALL_SECONDS`.
- `GrpcDoor` / `RestDoor`: one SendConversationMessages call through gRPC (grpcio, the
  request encoded by hand) or the REST bridge (raw HTTP/1.1 over asyncio), each of which
  can be cut short: a deadline of a few ms or a cancel (RST_STREAM), a connection closed
  mid-body or before the answer.
- `Ledger`: what callers offered and were told; `settle` retries one idempotency key until
  it has an answer, as a real client does.
"""

import asyncio
import collections
import json
import random
import sys
import time
import urllib.request
from dataclasses import dataclass, field as dc_field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import TOKEN, fields, int_field, field, rest_body, send_message  # noqa: E402

MODES = ("ok", "refuse", "fail", "stall")
# Answers after which a client sends the same key again (after a pause).
RETRYABLE = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED", "CONNECT", "UNKNOWN",
             "INTERNAL", "HTTP_500", "HTTP_502", "HTTP_504", "CUT"}
COMPLETED = 3  # convmsg.v1.RequestStatus.REQUEST_STATUS_COMPLETED


# ---- the receiver -----------------------------------------------------------------------

def receive(port, log_path, stall_seconds):
    """The receiver process: HTTP/1.1 with keep-alive on asyncio, serving until killed."""
    state = {"mode": "ok"}
    log = open(log_path, "a", buffering=1 << 16)
    answers = {"ok": (200, b"{}"), "refuse": (400, b'{"error":"refused by the chaos receiver"}'),
               "fail": (503, b'{"error":"failing on purpose"}')}
    outcomes = {"ok": "ok", "refuse": "refused", "fail": "failed", "stall": "stalled"}

    async def flush():
        while True:
            await asyncio.sleep(0.05)
            log.flush()

    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
                headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
                await reader.readexactly(int(headers.get("content-length", "0")))
                if path.startswith("/mode/"):
                    state["mode"], mode = path.rsplit("/", 1)[1], "ok"
                else:
                    mode = state["mode"]
                    log.write(f"{headers.get('webhook-id', '-')} {outcomes[mode]}\n")
                if mode == "stall":
                    await asyncio.sleep(stall_seconds)
                    break
                status, body = answers[mode]
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                             f"content-length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError, ValueError):
            pass  # a sender killed mid-request, or a stalled answer abandoned
        finally:
            writer.transport.abort()

    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
        asyncio.ensure_future(flush())
        await server.serve_forever()

    asyncio.run(main())


class Receiver:
    """The receiver process, and what it has logged so far."""

    def __init__(self, work, port, stall_seconds):
        import subprocess
        self.port = port
        self.log = Path(work) / "receiver.log"
        self.log.write_text("")
        self.process = subprocess.Popen([sys.executable, __file__, "receive", str(port), str(self.log),
                                         str(stall_seconds)])
        self.offset = 0
        self.receipts = collections.defaultdict(collections.Counter)  # webhook-id -> outcome -> n
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                self.mode("ok")
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("chaos: the receiver did not start")

    def mode(self, mode):
        assert mode in MODES
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.port}/mode/{mode}", data=b"",
                                                      method="POST"), timeout=5).close()

    def read(self):
        """Takes in what was logged since the last read; returns the receipts."""
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].decode().splitlines():
            ident, outcome = line.split()
            self.receipts[ident][outcome] += 1
        return self.receipts

    def outcomes(self):
        total = collections.Counter()
        for per in self.read().values():
            total.update(per)
        return total

    def stop(self):
        self.process.kill()
        self.process.wait()


# ---- the two doors ----------------------------------------------------------------------

@dataclass
class Answer:
    code: str  # "OK", a gRPC code name, or CONNECT / CUT / HTTP_nnn
    request_id: str = ""
    message_ids: list = dc_field(default_factory=list)

    @property
    def ok(self):
        return self.code == "OK"


class GrpcDoor:
    name = "gRPC"

    def __init__(self, grpc, addr):
        self.grpc = grpc
        # Reconnect quickly after the server died; never wait for readiness (fail fast).
        self.channel = grpc.aio.insecure_channel(addr, options=[
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 400), ("grpc.enable_retries", 0),
            ("grpc.use_local_subchannel_pool", 1)])  # a connection of its own
        self.metadata = (("authorization", f"Bearer {TOKEN}"),)
        self._send = self.channel.unary_unary("/convmsg.v1.ConversationMessages/SendConversationMessages")
        self._list = self.channel.unary_unary("/convmsg.v1.ConversationMessages/ListRequests")

    async def send(self, key, users, timeout=10.0, cut=None):
        """One call; `cut` = ("deadline", s) or ("cancel", s) ends it early (a deadline
        of s, or RST_STREAM after s)."""
        if cut and cut[0] == "deadline":
            timeout = cut[1]
        call = self._send(send_message(users, key), metadata=self.metadata, timeout=timeout)
        task = asyncio.ensure_future(self._finish(call))
        if cut and cut[0] == "cancel":
            done, _ = await asyncio.wait({task}, timeout=cut[1])
            if not done:
                call.cancel()
        return await task

    async def _finish(self, call):
        try:
            reply = await call
        except asyncio.CancelledError:
            return Answer("CUT")
        except self.grpc.aio.AioRpcError as e:
            return Answer(e.code().name)
        request_id, mids = "", []
        for number, value in fields(reply):
            if number == 1:
                request_id = value.decode()
            elif number == 2:
                mids.append(value.decode())
        return Answer("OK", request_id, mids)

    async def list_requests(self):
        """{request id: status} of every stored request (ListRequests, pages of 1,000)."""
        out, token = {}, b""
        while True:
            body = int_field(4, 1000) + (field(5, token) if token else b"")
            reply = await self._list(body, metadata=self.metadata, timeout=60)
            token = b""
            for number, value in fields(reply):
                if number == 1:
                    record = dict((n, v) for n, v in fields(value) if n in (1, 5))
                    out[record[1].decode()] = record.get(5, 0)
                elif number == 2:
                    token = value
            if not token:
                return out

    async def close(self):
        await self.channel.close()


class RestDoor:
    name = "REST"
    PATH = "/services/data/v62.0/actions/standard/sendConversationMessages"

    def __init__(self, addr):
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)

    async def send(self, key, users, timeout=10.0, cut=None):
        """One call on a connection of its own; `cut` = ("mid-body", s) sends half the body
        and closes after s, ("before-answer", s) sends it all and closes after s."""
        body = rest_body(users)
        head = (f"POST {self.PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nIdempotency-Key: {key}\r\nConnection: close\r\n\r\n").encode()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
        except (OSError, asyncio.TimeoutError):
            return Answer("CONNECT")
        try:
            if cut:
                writer.write(head + (body[:len(body) // 2] if cut[0] == "mid-body" else body))
                try:
                    data = await asyncio.wait_for(reader.read(), cut[1])
                except asyncio.TimeoutError:
                    return Answer("CUT")
            else:
                writer.write(head + body)
                data = await asyncio.wait_for(reader.read(), timeout)
        except asyncio.TimeoutError:
            return Answer("DEADLINE_EXCEEDED")
        except OSError:
            return Answer("CONNECT")
        finally:
            writer.transport.abort()
        return self.parse(data)

    @staticmethod
    def parse(data):
        if not data:
            return Answer("CONNECT")
        head, _, body = data.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return Answer("CONNECT")
        if status == 200:
            result = json.loads(body)[0]["outputValues"]
            return Answer("OK", result["requestId"], result["messageIdentifiers"].split(","))
        for marker, code in ((b"REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"), (b"SERVER_UNAVAILABLE", "UNAVAILABLE"),
                             (b"DUPLICATE_VALUE", "ALREADY_EXISTS")):
            if marker in body:
                return Answer(code)
        return Answer(f"HTTP_{status}")


# ---- the ledger -------------------------------------------------------------------------

class Ledger:
    """What the callers of one scenario offered and were told."""

    def __init__(self):
        self.offered = 0
        self.acked = {}  # idempotency key -> (request id, message ids)
        self.answers = collections.Counter()  # answer code -> calls
        self.conflicts = []  # keys answered with two request ids, or refused as another body
        self.unanswered = 0  # keys still without an answer when the caller gave up
        self.give_up_at = float("inf")
        self.key_users = {}

    def new_key(self, tag, users):
        self.offered += 1
        key = f"{tag}-{self.offered}-{random.getrandbits(32):08x}"
        self.key_users[key] = users
        return key

    def record(self, key, answer):
        self.answers[answer.code] += 1
        if answer.code == "ALREADY_EXISTS":
            self.conflicts.append(f"{key}: ALREADY_EXISTS for the same body")
        if not answer.ok:
            return
        before = self.acked.get(key)
        if before and before[0] != answer.request_id:
            self.conflicts.append(f"{key}: answered {before[0]} then {answer.request_id}")
        else:
            self.acked[key] = (answer.request_id, answer.message_ids)

    async def settle(self, door, key, cut=None):
        """Sends `key` (the first attempt cut short as `cut` says) until it has an answer."""
        users = self.key_users[key]
        while True:
            answer = await door.send(key, users, cut=cut)
            cut = None
            self.record(key, answer)
            if answer.code not in RETRYABLE:
                return answer
            if time.monotonic() > self.give_up_at:
                self.unanswered += 1
                return answer
            await asyncio.sleep(random.uniform(0.05, 0.2))

    def message_ids(self):
        return [m for _, mids in self.acked.values() for m in mids]


async def callers(doors, users, ledger, stop, rate, tag):
    """len(doors) callers, together offering about `rate` new keys a second until `stop`,
    each key settled before the next; then each finishes its key."""
    async def one(door, n):
        pause = len(doors) / rate
        while not stop.is_set():
            started = time.monotonic()
            picked = random.sample(users, random.choice((1, 2)))
            await ledger.settle(door, ledger.new_key(f"{tag}{n}", picked))
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)) * random.uniform(0.5, 1.5))

    await asyncio.gather(*(one(door, n) for n, door in enumerate(doors)))


if __name__ == "__main__" and sys.argv[1:2] == ["receive"]:
    receive(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
