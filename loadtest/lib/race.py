#!/usr/bin/env python3
"""The load and the judge of loadtest/cluster: races codes through two gateways, then checks
every promise the check path makes against the answers and the store.

For --duration seconds, --flows workers each loop: a send to a number never used before (through
either gateway), the code read back from the sink (GET /codes/{e164}), then 0 to 7 wrong codes
and 1 to 3 right ones checked at once, by id, each through a gateway picked at random, so the
right code races itself and the wrong ones across both instances. --senders workers only send
(more send load; those messages are counted too). Afterwards it waits for the sink to have every
message, reads each raced verification back (GET /v1/verifications/{id}, from the store) and
holds it to:

- no wrong code approved, and no verification approved twice (a right code approved exactly
  once whenever one was checked while the verification was pending);
- exact attempt counts: the checks answered 200 are the ones that counted, their attempts_left
  are the distinct values max-1, max-2, ... (each counted check took its own attempt), never
  more than max_attempts, and the store's attempts equal that count;
- every 409 names the status the store holds (already approved / max attempts reached);
- nothing lost or doubled: the sink received exactly one message per accepted send and no other.

Only the standard library: a small keep-alive HTTP/1.1 client on asyncio (each request waits
for its answer on its connection; a connection serves one request at a time). Prints the
figures, then a line `RESULT key=value ...` for loadtest/cluster and `verdict: pass|FAIL`;
exits 1 on any violation, 2 when it could not run.
"""

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from urllib.parse import urlsplit

# Answers the check path may give; anything else is unexpected and reported.
COUNTED_STATUSES = {"approved", "pending", "max_attempts_reached"}
FINAL_409 = {
    "approved": "verification-already-approved",
    "max_attempts_reached": "verification-max-attempts-reached",
}
# At most this many violations are printed in full (all are counted).
SHOWN = 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Pool:
    """Keep-alive connections to one host; at most `limit` requests in flight."""

    def __init__(self, url, limit):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.idle = []
        self.slots = asyncio.Semaphore(limit)

    async def request(self, method, path, headers=(), body=None, timeout=30.0):
        """(status, body bytes); raises OSError / asyncio errors when no answer came. A GET (the
        sink's codes, a verification read back) is tried again on a new connection when a kept
        one was closed under it; a POST never is: whether it counted would be unknown."""
        for attempt in range(3):
            try:
                return await self.request_once(method, path, headers, body, timeout)
            except (OSError, asyncio.IncompleteReadError):
                if method != "GET" or attempt == 2:
                    raise

    async def request_once(self, method, path, headers, body, timeout):
        async with self.slots:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            payload = b"" if body is None else body.encode()
            head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                    f"Content-Length: {len(payload)}"]
            head += list(headers)
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            try:
                status, data, keep = await asyncio.wait_for(read_response(reader), timeout)
            except BaseException:
                writer.close()
                raise
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()
            return status, data


async def read_response(reader):
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("connection closed before an answer")
    status = int(line.split(b" ", 2)[1])
    length, chunked, keep = 0, False, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            keep = False
    if not chunked:
        return status, await reader.readexactly(length), keep
    data = b""
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, data, keep
        data += chunk[:-2]


def problem(body):
    """The last part of a problem answer's type URN (`urn:otpgate:problem:unavailable`)."""
    return re.split("[/:]", str(body.get("type", "")))[-1]


class Verification:
    __slots__ = ("id", "to", "code", "answers", "unknown", "stored", "attempts")

    def __init__(self, vid, to):
        self.id, self.to, self.code = vid, to, None
        # (right code?, HTTP status, body status or problem type, valid, attempts_left)
        self.answers = []
        self.unknown = 0  # checks without an answer (transport error, 5xx): may have counted
        self.stored = None  # the GET answer after the run
        self.attempts = None  # the attempts the store counted, read from Redis after the run


class Run:
    def __init__(self, args):
        self.args = args
        self.gateways = [Pool(url, args.connections) for url in args.gateways.split(",")]
        self.sink = Pool(args.sink, args.connections)
        self.auth = (f"Authorization: Bearer {args.key}", "Content-Type: application/json")
        self.next_number = args.numbers_from
        self.raced = []  # Verification, sent and checked
        self.accepted = 0  # sends answered 201 (flows and senders)
        self.refused = {}  # status -> count of sends not accepted
        self.send_unknown = 0  # sends without an answer
        self.failures = []  # what each request without an answer (or with a 5xx) got
        self.no_code = []  # accepted, but no code reached the sink within --code-wait
        self.latency = {"send": [], "check": []}
        self.requests = 0  # requests to the gateways during the load
        self.checks = 0
        self.rng = random.Random(args.random_seed)

    def fresh_number(self):
        number = self.next_number
        self.next_number += 1
        return f"+49151{number:08d}"

    def gateway(self):
        return self.rng.randrange(len(self.gateways))

    async def call(self, kind, index, method, path, body=None):
        started = time.monotonic()
        self.requests += 1
        status, data = await self.gateways[index].request(method, path, self.auth, body)
        self.latency[kind].append(time.monotonic() - started)
        return status, (json.loads(data) if data else {})

    async def send(self, to):
        try:
            status, body = await self.call("send", self.gateway(), "POST", "/v1/verifications",
                                           json.dumps({"to": to}))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as error:
            self.send_unknown += 1
            self.failures.append(f"send {to}: no answer ({error!r})")
            return None
        if status == 201 and str(body.get("id", "")).startswith("VE"):
            self.accepted += 1
            return Verification(body["id"], to)
        if status >= 500 and problem(body) != "unavailable":
            self.send_unknown += 1
            self.failures.append(f"send {to}: {status} {body.get('type', '')} {body.get('detail', '')}")
        else:
            # A refusal, 4xx or 503 `unavailable` ("nothing was changed"): not accepted, so no
            # message may reach the sink for it (the message count holds it to that).
            self.refused[status] = self.refused.get(status, 0) + 1
        return None

    async def code_of(self, to):
        deadline = time.monotonic() + self.args.code_wait
        path = "/codes/%2B" + to[1:]
        while time.monotonic() < deadline:
            status, data = await self.sink.request("GET", path)
            if status == 200:
                return json.loads(data)["code"]
            await asyncio.sleep(0.01)
        return None

    async def check(self, verification, code, right):
        self.checks += 1
        body = json.dumps({"id": verification.id, "code": code})
        try:
            status, answer = await self.call("check", self.gateway(), "POST",
                                             "/v1/verifications/check", body)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as error:
            verification.unknown += 1
            self.failures.append(f"check {verification.id}: no answer ({error!r})")
            return
        what = answer.get("status") if status == 200 else problem(answer)
        # 503 `unavailable` promises that nothing was changed (an answer, not counted); any other
        # 5xx (`outcome-unknown`: the check may have counted) leaves the count open.
        if status >= 500 and what != "unavailable":
            verification.unknown += 1
            self.failures.append(f"check {verification.id}: {status} {answer.get('type', '')} {answer.get('detail', '')}")
            return
        verification.answers.append(
            (right, status, what, answer.get("valid"), answer.get("attempts_left")))

    async def flow(self, deadline):
        while time.monotonic() < deadline:
            verification = await self.send(self.fresh_number())
            if verification is None:
                continue
            verification.code = await self.code_of(verification.to)
            if verification.code is None:
                self.no_code.append(verification.to)
                continue
            # A wrong code: the right one with its last digit moved on.
            code = verification.code
            wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
            codes = [(code, True)] * self.rng.randint(1, 3) + [(wrong, False)] * self.rng.randint(0, 7)
            self.rng.shuffle(codes)
            await asyncio.gather(*(self.check(verification, c, right) for c, right in codes))
            self.raced.append(verification)

    async def sender(self, deadline):
        while time.monotonic() < deadline:
            await self.send(self.fresh_number())

    async def sink_stats(self):
        status, data = await self.sink.request("GET", "/stats")
        if status != 200:
            raise RuntimeError(f"the sink's /stats answered {status}")
        return json.loads(data)

    async def wait_for_delivery(self):
        """The sink's count once every accepted send arrived, or once it stopped growing."""
        last, still_since = None, time.monotonic()
        while True:
            stats = await self.sink_stats()
            if stats["received"] >= self.accepted + self.send_unknown:
                # A message sent twice because two workers took one entry would follow within
                # moments (one redelivered after a reclaim would take reclaim_idle_ms, 30 s, but
                # nothing here stops a worker).
                await asyncio.sleep(1.0)
                return await self.sink_stats()
            if stats["received"] != last:
                last, still_since = stats["received"], time.monotonic()
            elif time.monotonic() - still_since > self.args.drain_wait:
                return stats
            await asyncio.sleep(0.1)

    async def read_back(self, redis):
        queue = list(self.raced)
        for verification in self.raced:
            verification.attempts = await redis.attempts(self.args.key_prefix, verification.id)

        async def reader():
            while queue:
                verification = queue.pop()
                status, body = await self.gateways[self.gateway()].request(
                    "GET", f"/v1/verifications/{verification.id}", self.auth)
                verification.stored = (status, json.loads(body) if body else {})

        await asyncio.gather(*(reader() for _ in range(16)))


def judge(run):
    """Every violation, as a list of (rule, detail), and how many verifications were held to
    exact counts (every check answered)."""
    limit = run.args.max_attempts
    out = []
    exact = 0
    for v in run.raced:
        counted = [a for a in v.answers if a[1] == 200]
        approvals = [a for a in counted if a[2] == "approved"]
        # The checks that counted are serialised by the store: the ones answered `pending` took
        # attempts 1, 2, ... (attempts_left limit-1, limit-2, ...), and at most one more made
        # the verification final (approved, or max_attempts_reached on the last attempt), after
        # which nothing counts. A final verification answers attempts_left 0.
        pending = sorted((a[4] for a in counted if a[2] == "pending"), reverse=True)
        finals = [a for a in counted if a[2] != "pending"]
        for right, status, what, valid, _ in v.answers:
            if status == 200 and what not in COUNTED_STATUSES:
                out.append(("unexpected answer", f"{v.id}: 200 {what}"))
            elif status not in (200, 409) and (status, what) != (503, "unavailable"):
                out.append(("unexpected answer", f"{v.id}: {status} {what}"))
            if not right and (what == "approved" or valid is True):
                out.append(("wrong code approved", f"{v.id}: {status} {what} valid={valid}"))
            if right and status == 200 and what != "approved":
                out.append(("right code counted but not approved", f"{v.id}: {what}"))
        if len(approvals) > 1:
            out.append(("double approval", f"{v.id}: approved {len(approvals)} times"))
        if len(finals) > 1:
            out.append(("made final twice", f"{v.id}: {[a[2] for a in finals]}"))
        if len(counted) > limit:
            out.append(("attempts over the limit", f"{v.id}: {len(counted)} checks counted, limit {limit}"))
        status, stored = v.stored or (None, {})
        if status != 200:
            out.append(("verification unreadable", f"{v.id}: GET answered {status} {stored}"))
            continue
        used = v.attempts
        if used is None or used < 0:
            out.append(("attempt count unreadable", f"{v.id}: no record in Redis"))
            continue
        if used > limit:
            out.append(("attempts over the limit", f"{v.id}: store {used}, limit {limit}"))
        if v.unknown == 0:
            exact += 1
            if pending != list(range(limit - 1, limit - 1 - len(pending), -1)):
                out.append(("attempts not distinct", f"{v.id}: pending answers with attempts_left {pending}"))
            if any(a[2] == "max_attempts_reached" for a in finals) and len(counted) != limit:
                out.append(("attempt limit early", f"{v.id}: max_attempts_reached after {len(counted)} attempts"))
            if used != len(counted):
                out.append(("attempt count", f"{v.id}: store {used}, checks that counted {len(counted)}"))
            want = "approved" if approvals else ("max_attempts_reached" if used >= limit else "pending")
            if stored.get("status") != want:
                out.append(("stored status", f"{v.id}: store {stored.get('status')}, answers say {want}"))
            if want == "pending" and stored.get("attempts_left") != limit - used:
                out.append(("attempt count", f"{v.id}: GET attempts_left {stored.get('attempts_left')}, store {used}"))
        elif not len(counted) <= used <= len(counted) + v.unknown:
            out.append(("attempt count", f"{v.id}: store {used}, counted {len(counted)} + {v.unknown} unanswered"))
        for right, status, what, _, _ in v.answers:
            if status == 409 and what != FINAL_409.get(stored.get("status")):
                out.append(("409 names another status", f"{v.id}: {what}, store {stored.get('status')}"))
    return out, exact


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Redis:
    """One kept connection per Redis node on 127.0.0.1; a command on a cluster follows MOVED."""

    def __init__(self, ports):
        self.ports = ports
        self.connections = {}

    async def command(self, *words, port=None):
        port = port or self.ports[0]
        if port not in self.connections:
            self.connections[port] = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = self.connections[port]
        words = [str(word) for word in words]
        writer.write((f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)).encode())
        line = (await reader.readline()).decode()
        if line.startswith("$") and int(line[1:]) >= 0:
            return (await reader.readexactly(int(line[1:]) + 2))[:-2].decode()
        if line.startswith("-MOVED"):
            return await self.command(*words, port=int(line.split()[2].rsplit(":", 1)[1]))
        if line.startswith("-"):
            raise RuntimeError(f"Redis on {port}: {line.strip()}")
        return line[1:].strip()

    async def attempts(self, prefix, verification_id):
        """The attempts the store counted for a verification: from the record as it is laid out
        (an 8-field hash with the count in `n`; or the packed string of issue 19 item 1, the
        count a little-endian u32 at offset 1). -1 when the record is gone or unknown."""
        shard = int(verification_id[2:4], 16)
        key = f"{prefix}:{{s{shard:02d}}}:v:{verification_id}"
        return int(await self.command("EVAL", ATTEMPTS_SCRIPT, 1, key))


# The store's attempt count of one verification, whichever record layout this build writes.
ATTEMPTS_SCRIPT = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'hash' then return tonumber(redis.call('HGET', KEYS[1], 'n')) or -1 end
if kind == 'string' then return struct.unpack('<I4', redis.call('GETRANGE', KEYS[1], 1, 4)) end
return -1
"""


async def script_calls(redis):
    """(calls, usec) of EVALSHA and EVAL, and calls of every command, summed over the nodes."""
    scripts, usec, commands = 0, 0, 0
    for port in redis.ports:
        for line in (await redis.command("INFO", "commandstats", port=port)).splitlines():
            found = re.match(r"cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)", line)
            if found:
                commands += int(found[2])
                if found[1] in ("evalsha", "eval"):
                    scripts += int(found[2])
                    usec += int(found[3])
    return scripts, usec, commands


def percentile(values, share):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


async def main(args):
    run = Run(args)
    stats = await run.sink_stats()
    if stats["received"] != 0:
        print(f"race.py: the sink already holds {stats['received']} messages; it needs a fresh one",
              file=sys.stderr)
        return 2
    # CPU of the gateways and of Redis, and Redis's own script time, over the load alone.
    gateway_pids = [int(p) for p in args.gateway_pids.split(",") if p]
    redis_pids = [int(p) for p in args.redis_pids.split(",") if p]
    redis_ports = [int(p) for p in args.redis_ports.split(",") if p]
    redis = Redis(redis_ports)
    for port in redis_ports:
        await redis.command("CONFIG", "RESETSTAT", port=port)
    gateway_before = sum(map(cpu_seconds, gateway_pids))
    redis_before = [cpu_seconds(pid) for pid in redis_pids]
    started = time.monotonic()
    deadline = started + args.duration
    await asyncio.gather(*[run.flow(deadline) for _ in range(args.flows)],
                         *[run.sender(deadline) for _ in range(args.senders)])
    elapsed = time.monotonic() - started
    load_requests, load_checks = run.requests, run.checks
    # The CPU window ends once the messages of the accepted sends are delivered, so a send's
    # figure includes its delivery (the outbox read, the provider call, the acknowledgement).
    sink = await run.wait_for_delivery()
    gateway_cpu = sum(map(cpu_seconds, gateway_pids)) - gateway_before
    redis_node_cpu = [cpu_seconds(pid) - before for pid, before in zip(redis_pids, redis_before)]
    redis_cpu = sum(redis_node_cpu)
    scripts, script_usec, commands = await script_calls(redis)
    await run.read_back(redis)
    violations, exact = judge(run)

    # Messages: one per accepted send, none lost, none twice (every number is new, so the
    # sink's count of distinct numbers is the count of sends that arrived at least once).
    if sink["received"] != run.accepted or sink["numbers"] != run.accepted:
        lost = max(0, run.accepted - sink["numbers"])
        doubled = sink["received"] - sink["numbers"]
        violations.append(("messages", f"accepted {run.accepted} sends, the sink received {sink['received']} "
                           f"messages to {sink['numbers']} numbers: {lost} lost, {doubled} twice"))
    if run.send_unknown or any(v.unknown for v in run.raced):
        violations.append(("unanswered requests", f"{run.send_unknown} sends and "
                           f"{sum(v.unknown for v in run.raced)} checks had no answer (or 5xx)"))
        violations += [("unanswered requests", failure) for failure in run.failures]
    if run.no_code:
        violations.append(("code not delivered", f"{len(run.no_code)} accepted sends had no code at the sink "
                           f"within {args.code_wait} s, e.g. {run.no_code[:3]}"))

    answers = [a for v in run.raced for a in v.answers]
    check_unavailable = sum(1 for a in answers if a[1] == 503)
    approved = sum(1 for a in answers if a[2] == "approved")
    counted = sum(1 for a in answers if a[1] == 200)
    limit_hit = sum(1 for v in run.raced if v.stored and v.stored[1].get("status") == "max_attempts_reached")
    print(f"load: {elapsed:.1f} s, {args.flows} racing flows + {args.senders} senders over "
          f"{len(run.gateways)} gateways")
    print(f"requests to the gateways: {load_requests} ({load_requests / elapsed:.0f}/s); "
          f"sends accepted {run.accepted} ({run.accepted / elapsed:.0f}/s), refused {run.refused or 0}; "
          f"checks {load_checks} ({load_checks / elapsed:.0f}/s), of them {check_unavailable} answered "
          f"503 unavailable (nothing changed)")
    print(f"latency ms: send p50 {percentile(run.latency['send'], .5):.1f} p99 "
          f"{percentile(run.latency['send'], .99):.1f}; check p50 {percentile(run.latency['check'], .5):.1f} "
          f"p99 {percentile(run.latency['check'], .99):.1f}")
    per_request = 1e6 / max(1, load_requests)
    print(f"CPU µs per gateway request: gateways {gateway_cpu * per_request:.1f} (both together), Redis "
          f"{redis_cpu * per_request:.1f} ({len(redis_pids)} servers); Redis: {scripts / max(1, load_requests):.2f} "
          f"script calls and {commands / max(1, load_requests):.2f} commands per request, "
          f"{script_usec / max(1, scripts):.1f} µs per script call (INFO commandstats)")
    if len(redis_pids) > 1:
        print("Redis CPU µs per gateway request, node by node (loadtest/cluster names the one with the account's slot): "
              + ", ".join(f"{port}: {cpu * per_request:.1f}" for port, cpu in zip(redis_ports, redis_node_cpu)))
    print(f"raced verifications: {len(run.raced)} ({exact} with every check answered); check answers "
          f"{len(answers)}: {counted} counted, {approved} approvals, {len(answers) - counted} found it final "
          f"(409); {limit_hit} ended at max attempts")
    print(f"messages: {run.accepted} sends accepted, sink received {sink['received']} to {sink['numbers']} numbers")
    rules = {}
    for rule, detail in violations:
        rules.setdefault(rule, []).append(detail)
    for rule, details in sorted(rules.items()):
        print(f"VIOLATION {rule}: {len(details)}")
        for detail in details[:SHOWN]:
            print(f"  {detail}")
    print(f"RESULT seconds={elapsed:.2f} requests={load_requests} sends={run.accepted} checks={load_checks} "
          f"refused={sum(run.refused.values())} unavailable_checks={check_unavailable} raced={len(run.raced)} exact={exact} approvals={approved} counted={counted} "
          f"received={sink['received']} gateway_cpu_us={gateway_cpu * per_request:.1f} "
          f"redis_cpu_us={redis_cpu * per_request:.1f} script_us={script_usec / max(1, scripts):.1f} "
          f"scripts_per_request={scripts / max(1, load_requests):.2f} violations={len(violations)} "
          f"send_p99_ms={percentile(run.latency['send'], .99):.1f} check_p99_ms={percentile(run.latency['check'], .99):.1f}")
    print("verdict: " + ("pass" if not violations else "FAIL"))
    return 1 if violations else 0


def parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", required=True, help="comma list of base URLs")
    parser.add_argument("--sink", required=True, help="the sink's base URL (examples/baseline.rs)")
    parser.add_argument("--key", required=True, help="a service key")
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--flows", type=int, default=48)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--connections", type=int, default=128, help="per gateway and for the sink")
    parser.add_argument("--max-attempts", type=int, default=5, help="the gateways' max_check_attempts")
    parser.add_argument("--numbers-from", type=int, default=30000000, help="first number: +49151 and 8 digits")
    parser.add_argument("--code-wait", type=float, default=10, help="seconds a code may take to reach the sink")
    parser.add_argument("--drain-wait", type=float, default=10,
                        help="seconds without a new message at the sink before counting what arrived")
    parser.add_argument("--gateway-pids", default="", help="comma list: CPU time per request")
    parser.add_argument("--redis-pids", default="", help="comma list: CPU time per request")
    parser.add_argument("--redis-ports", default="", help="comma list: INFO commandstats per request")
    parser.add_argument("--key-prefix", default="otpgate", help="the gateways' store.key_prefix")
    parser.add_argument("--random-seed", type=int, default=None)
    args = parser.parse_args()
    if args.duration <= 0 or args.flows < 0 or args.senders < 0 or args.flows + args.senders < 1 \
            or args.max_attempts < 1:
        parser.error("--duration must be positive, --flows and --senders at least 0 and not both 0, "
                     "--max-attempts at least 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
