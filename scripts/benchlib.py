"""What scripts/bench and scripts/chaos share: the server in its own process, the hand-encoded
protobuf of the few calls they make, databases, h2load, the results file.

Stdlib only. Both scripts import it from their own directory.
"""

import datetime
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROG = Path(sys.argv[0]).name


def shown_command(script):
    """The command line as the results file shows it: paths outside the repository (a
    binary built elsewhere) are written as <name>, so no machine's paths are committed."""
    repo = Path(__file__).resolve().parents[1]
    shown = []
    for arg in sys.argv[1:]:
        path = Path(arg)
        if path.is_absolute():
            try:
                arg = str(path.resolve().relative_to(repo))
            except ValueError:
                arg = f"<{path.name}>"
        shown.append(arg)
    return " ".join([script, *shown]).strip()
TOKEN = "cm_bench_" + "b" * 40
RECIPIENTS = 100  # end users declared; the sends address a few of them
PG_URL = os.environ.get("CONVMSG_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def say(*parts):
    print(f"{PROG}:", *parts, flush=True)


def fail(message):
    sys.exit(f"{PROG}: {message}")


# ---- tools --------------------------------------------------------------------------

TOOLS = {"h2load": "nghttp2-client", "wrk": "wrk", "nginx": "nginx-light", "curl": "curl"}


def ensure_tools(needed=tuple(TOOLS)):
    missing = [t for t in needed if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        fail(f"missing {missing}; install the Debian packages {[TOOLS[t] for t in missing]}")
    say("installing", *[TOOLS[t] for t in missing])
    subprocess.run(["apt-get", "install", "-y", "-q", *[TOOLS[t] for t in missing]], check=True,
                   stdout=subprocess.DEVNULL)


def nginx_binary():
    return shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def release_binary():
    """Builds the release binary (as CI and the benchmark use it) and returns its path."""
    say("building the release binary")
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "convmsg"], cwd=REPO, check=True)
    return str(REPO / "target/release/convmsg")


# ---- protobuf, by hand (the few fields the scripts send and read) ----------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def int_field(number, value):
    return varint(number << 3) + varint(value)


def grpc_frame(message):
    return b"\0" + len(message).to_bytes(4, "big") + message


def read_varint(buf, at):
    shift = value = 0
    while True:
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, at


def fields(buf):
    """(field number, value) of every field of one message: bytes for length-delimited
    fields, an int for varints (fixed-width fields are skipped)."""
    at, out = 0, []
    while at < len(buf):
        key, at = read_varint(buf, at)
        kind = key & 7
        if kind == 2:
            n, at = read_varint(buf, at)
            out.append((key >> 3, buf[at:at + n]))
            at += n
        elif kind == 0:
            value, at = read_varint(buf, at)
            out.append((key >> 3, value))
        elif kind == 1:
            at += 8
        elif kind == 5:
            at += 4
        else:
            raise ValueError(f"wire type {kind}")
    return out


def length_fields(buf):
    """(field number, bytes) of every length-delimited field of one message."""
    return [(n, v) for n, v in fields(buf) if isinstance(v, bytes)]


def send_message(users, idempotency_key=""):
    """A SendConversationMessagesRequest for component Ping (unframed)."""
    key = field(9, idempotency_key.encode()) if idempotency_key else b""
    return field(1, b"Ping") + b"".join(field(8, u.encode()) for u in users) + key


def send_body(users):
    return grpc_frame(send_message(users))


def rest_body(users):
    ids = ",".join(f'"{u}"' for u in users)
    return f'{{"inputs":[{{"messageDefinitionName":"Ping","messagingEndUserIds":[{ids}]}}]}}'.encode()


# ---- the server -----------------------------------------------------------------------

def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Server:
    """`convmsg serve` in its own process, on a port of its own (kept across restarts).

    `settings` adds or overrides keys per section, e.g. {"dispatch": {"lease_ms": 2000}}."""

    def __init__(self, binary, work, database_url, receiver_port, dispatch, old_config=False, settings=None,
                 records=""):
        self.binary, self.work = binary, Path(work)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.config = self.work / "convmsg.toml"
        self.log_path = self.work / "server.log"
        sections = {
            "log": {"filter": "warn"},
            "dispatch": {"enabled": dispatch, "poll_interval_ms": 200},
            # Webhook URLs on loopback over plain HTTP must be allowed (since the SSRF guard).
            "providers.webhook": {"secret": WEBHOOK_SECRET} if old_config else
            {"secret": WEBHOOK_SECRET, "allow_http": True, "allowed_networks": ["127.0.0.0/8"]},
        }
        for section, keys in (settings or {}).items():
            sections.setdefault(section, {}).update(keys)
        text = f'bootstrap_token = "{TOKEN}"\nlisten = "{self.addr}"\ndatabase_url = "{database_url}"\n'
        for section, keys in sections.items():
            text += f"[{section}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items())
        text += f"""[[channels]]
developer_name = "hooks"
message_type = "Custom"
provider = "webhook"
provider_options = {{ url = "http://127.0.0.1:{receiver_port}/hook" }}
[[definitions]]
api_name = "Ping"
text_layout = "ping"
"""
        text += "".join(f'\n[[end_users]]\nchannel = "hooks"\nmessaging_platform_key = "user-{i}"\n'
                        'consent_status = "ExplicitlyOptedIn"\n' for i in range(RECIPIENTS))
        self.config.write_text(text + records)
        self.process = None
        self.start()

    def start(self, max_file_kib=None, ready_within=60):
        """Starts the process and waits for /readyz. `max_file_kib` limits the size of every
        file it writes (`ulimit -f`, SIGXFSZ ignored: writes past it fail with EFBIG)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVMSG_")}
        env.pop("RUST_LOG", None)
        command = [self.binary, "serve", "--config", str(self.config)]
        if max_file_kib is not None:
            # Through a shell, not preexec_fn: forking a process with threads (grpcio's) is unsafe.
            command = ["bash", "-c", f"trap '' XFSZ; ulimit -f {int(max_file_kib)} && exec \"$@\"", "-", *command]
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log)
        deadline = time.time() + ready_within
        while time.time() < deadline:
            if self.process.poll() is not None:
                self.log.close()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                fail(f"the server exited at start ({self.process.returncode}); the end of its log:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://{self.addr}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        fail(f"the server did not become ready within {ready_within} s")

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=30) as r:
            return r.read().decode()

    def requests_by_status(self):
        counts = {}
        for line in self.metrics().splitlines():
            m = re.match(r'convmsg_send_requests\{status="(\w+)"\} (\d+)', line)
            if m:
                counts[m.group(1)] = int(m.group(2))
        return counts

    def stored(self):
        return sum(self.requests_by_status().values())

    def rss_mib(self):
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def end_users(self):
        """The ids of the declared end users, through MessagingAdmin/ListMessagingEndUsers."""
        body = grpc_frame(varint(1 << 3) + varint(RECIPIENTS))  # page_size
        out = subprocess.run(
            ["curl", "-s", "--http2-prior-knowledge", "-H", "content-type: application/grpc", "-H", "te: trailers",
             "-H", f"authorization: Bearer {TOKEN}", "--data-binary", "@-",
             f"http://{self.addr}/convmsg.v1.MessagingAdmin/ListMessagingEndUsers"],
            input=body, capture_output=True, check=True, timeout=30).stdout
        message = out[5:5 + int.from_bytes(out[1:5], "big")]
        ids = []
        for number, user in length_fields(message):
            if number == 1:
                ids += [v.decode() for n, v in length_fields(user) if n == 1]
        if len(ids) < 10:
            fail(f"ListMessagingEndUsers gave {len(ids)} end users: {out[:200]!r}")
        return ids

    def kill(self):
        """SIGKILL: no drain, no lease given back."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.log.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# ---- load -----------------------------------------------------------------------------

def h2load(url, body, connections, streams, seconds=None, count=None, h1=False, headers=(), work=None,
           warm_up=1):
    """Runs h2load; returns (done/s, [latencies in ms], non-2xx count). A request h2load
    logs with status 0 got no answer: it was still in flight when the timed run ended
    (or the warm-up began), so it is neither a latency nor a failure."""
    log = Path(work) / "h2load.log"
    log.unlink(missing_ok=True)
    cmd = ["h2load", "-c", str(connections), "-m", str(streams), "-t", "1", f"--log-file={log}"]
    if h1:
        cmd.append("--h1")
    if seconds:
        cmd += ["-D", str(seconds)] + ([f"--warm-up-time={warm_up}"] if warm_up else [])
    else:
        cmd += ["-n", str(count)]
    for h in headers:
        cmd += ["-H", h]
    if body is not None:
        data = Path(work) / "body.bin"
        data.write_bytes(body)
        cmd += ["-d", str(data)]
    cmd.append(url)
    timeout = (seconds or 0) + 120 if seconds else 1800
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    if not m:
        fail(f"h2load said:\n{out}")
    latencies, bad = [], 0
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            status, micros = int(parts[1]), int(parts[2])
            if status == 0:
                continue
            latencies.append(micros / 1000)
            bad += not 200 <= status < 300
    return float(m.group(3)), latencies, bad


def grpc_headers():
    return ["content-type: application/grpc", "te: trailers", f"authorization: Bearer {TOKEN}"]


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round((len(values) - 1) * p)))]


def lat(values):
    return f"{pct(values, .5):.2f} / {pct(values, .99):.2f} / {pct(values, .999):.2f}"


# ---- databases ------------------------------------------------------------------------

class Database:
    """A fresh database: a SQLite file in `work`, or a database created on the PostgreSQL
    server at `admin_url` (dropped by `drop`)."""

    def __init__(self, backend, work, tag, admin_url=None):
        self.backend = backend
        if backend == "sqlite":
            self.url = f"sqlite://{work}/{PROG}-{tag}.db"
            self.name = None
        else:
            self.name = f"convmsg_{PROG}_{tag}_{os.getpid()}"
            self.admin = admin_url or PG_URL
            psql(self.admin, f"DROP DATABASE IF EXISTS {self.name}")
            psql(self.admin, f"CREATE DATABASE {self.name}")
            self.url = self.admin.rsplit("/", 1)[0] + "/" + self.name

    def drop(self):
        if self.name:
            psql(self.admin, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def psql(url, sql):
    return subprocess.run(["psql", url, "-qtAc", sql], check=True, capture_output=True, text=True,
                          timeout=120).stdout


def postgres_answers(url=PG_URL):
    if shutil.which("psql") is None:
        return False
    return subprocess.run(["psql", url, "-qtAc", "SELECT 1"], capture_output=True, timeout=20).returncode == 0


# ---- the results file -----------------------------------------------------------------

def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return (f"{datetime.date.today()}, commit {commit}{' (with uncommitted changes)' if dirty else ''}, "
            f"{os.cpu_count()} CPUs ({cpu}), load average before the run {os.getloadavg()[0]:.2f}")


def write_results(path, text, tag, title="# Benchmarks\n"):
    """Puts `text` between `<!-- {tag}:begin -->` and `<!-- {tag}:end -->` in `path`,
    keeping the rest of the file (the markers are appended when missing)."""
    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    old = path.read_text() if path.exists() else title
    if begin not in old:
        old += f"\n{begin}\n{end}\n"
    head, rest = old.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
