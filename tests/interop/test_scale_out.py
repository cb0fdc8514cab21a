"""More than one host (issue 12): three ``sip-responder`` instances with the same ``--seed``
behind Kamailio's ``dispatcher``, run with the shipped ``config/examples/scale-out/
kamailio.cfg`` (unchanged: the test's addresses, ports and short timers are given as
``-A NAME=VALUE`` defines, as the file's header says), SIPp calling through Kamailio.

Addresses: the responders listen on 127.0.0.2, .3 and .4, Kamailio on 127.0.0.10, SIPp on
127.0.0.1 (Linux routes all of 127.0.0.0/8 on ``lo``); every port is a free one. Each
responder runs with ``--admin`` on 127.0.0.1, so the test reads from its journal which
requests it got and what it answered.

What proves what:

* **Same seed, same answers**: a dialog set up on one instance is recognised by the others
  (its To tag is a keyed hash of Call-ID and From tag under the seed): a BYE sent straight to
  each instance gets byte-identical 200s, a forged To tag 481 from each.
* **Every responder takes a share**: 60 calls (INVITE, 200, ACK, BYE, 200) through Kamailio,
  0 failed; each instance's journal holds some of the INVITEs, and every call's INVITE, ACK
  and BYE are in the journal of one instance only (hash over Call-ID, Record-Route).
* **CANCEL reaches the INVITE's instance**: with ``INVITE@cancel*->180,200/5s``, SIPp's
  CANCEL gets 200 (from Kamailio) and its INVITE 487; the journal of the instance that got
  each INVITE holds its CANCEL, answered 200, and the INVITE's statuses end with 487 (the
  delayed 200 never went out).
* **A 503 is the rules' answer, not a failure**: ``INVITE@unavailable->503`` reaches the
  caller as 503 (Kamailio would make it 500 without ``remap_503_500 0``), and only one
  instance saw the call.
* **A dead responder costs no call once it is marked down**: SIPp calls at 10 calls/s; once
  one responder has answered a few INVITEs it is killed (SIGKILL, by the PID of the process
  this test started); Kamailio's probes mark it down (``scale-out: responder down``); every
  call whose INVITE SIPp sent after the test saw that line completes (200 to its BYE), and
  its INVITE is in a surviving instance's journal. Calls in flight at the kill are counted
  and shown: an INVITE that got no answer is retried on the next instance after FR_TIMER,
  and a BYE to the dead instance is sent to another one, which knows the dialog by its To
  tag (docs/scale-out.md, "Failover").
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from interop_support import SCENARIOS, PeerProcess, sipp_stats, sipp_trace, tool
from support import ResponderProcess, SipClient, free_udp_port, parse_response, unique

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "config" / "examples" / "scale-out"
CFG = RECIPE / "kamailio.cfg"
SEED = "20261206"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PROXY_HOST = "127.0.0.10"
CANCEL_RULE = "INVITE@cancel*->180,200/5s"
UNAVAILABLE_RULE = "INVITE@unavailable->503"
JOURNAL_SIZE = 5000
ADMIN_ON = re.compile(r"admin on (http://127\.0\.0\.1:\d+)")
# Calls of the failover test last this long between ACK and BYE, so the calls the killed
# responder answered last are still up when it dies: their BYE finds it gone.
HOLD_MS = 3000
# The test's timers: probes every second, one lost probe marks a responder down, a request
# with no answer at all fails after 1 s (the shipped defaults: 5 s, 2, 2 s). One UDP worker
# (shipped: 4): with several, two workers may relay the responder's back-to-back 180 and 200
# in the other order, and SIPp aborts a call on a 180 after its 200 (docs/scale-out.md,
# "Ordering").
TEST_DEFINES = ("DS_PING_INTERVAL=1", "DS_PROBING_THRESHOLD=1", "FR_TIMER=1000", "CHILDREN=1")


# --------------------------------------------------------------------------- processes


def kamailio_binary() -> str:
    """Debian installs kamailio in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/usr/local/sbin")
    return found if found is not None else tool("kamailio", "kamailio")


class Instance:
    """One responder: the process, its SIP address and its admin journal."""

    def __init__(self, process: ResponderProcess) -> None:
        self.process = process
        self.address = process.address
        self.admin = process.wait_for_stderr(ADMIN_ON).group(1)

    @property
    def uri(self) -> str:
        return f"sip:{self.address[0]}:{self.address[1]}"

    def journal(self, method: str | None = None) -> list[dict[str, object]]:
        query = f"?limit={JOURNAL_SIZE}" + (f"&method={method}" if method else "")
        with urllib.request.urlopen(f"{self.admin}/journal{query}", timeout=5) as resp:
            entries: list[dict[str, object]] = json.load(resp)["entries"]
        return entries

    def clear(self) -> None:
        request = urllib.request.Request(f"{self.admin}/journal", method="DELETE")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def probed(self) -> bool:
        """The dispatcher's OPTIONS (from the proxy's address) has reached it."""
        return any(str(e["source"]).startswith(f"{PROXY_HOST}:")
                   for e in self.journal("OPTIONS"))

    def calls(self) -> dict[str, list[dict[str, object]]]:
        """Journal entries by Call-ID, the dispatcher's OPTIONS probes left out."""
        out: dict[str, list[dict[str, object]]] = defaultdict(list)
        for entry in self.journal():
            if entry["method"] not in (None, "OPTIONS"):
                out[str(entry["call_id"])].append(entry)
        return out


class Kamailio(PeerProcess):
    name = "kamailio"

    def quit(self, proc: subprocess.Popen[bytes]) -> bool:
        proc.send_signal(signal.SIGTERM)  # our own child: it stops its worker processes
        return True


@dataclass
class Cluster:
    responders: list[Instance]
    proxy: Kamailio
    address: tuple[str, int]

    def context(self) -> str:
        outputs = "\n".join(f"--- responder {r.uri} stderr:\n{r.process.stderr_text(20)}"
                            for r in self.responders)
        return f"kamailio output:\n{self.proxy.output[-4000:]}\n{outputs}"


def wait_until(done: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll ``done`` (an HTTP read of a journal: nothing to block on) every 50 ms."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def wait_proxy_answers(address: tuple[str, int], timeout: float) -> None:
    """Kamailio's own keep-alive (OPTIONS without a user) gets 200 once it routes."""
    deadline = time.monotonic() + timeout
    with SipClient(address, timeout=0.2) as client:
        while time.monotonic() < deadline:
            client.send(client.request("OPTIONS", uri=f"sip:{address[0]}:{address[1]}"))
            got = client.recv(0.2)
            if got is not None and parse_response(got.data).status == 200:
                return
    raise AssertionError(f"Kamailio at {address} did not answer OPTIONS within {timeout} s")


@contextmanager
def started_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three responders and Kamailio in front of them, routing and probing."""
    exe = kamailio_binary()
    tool("sipp", "sip-tester")
    processes = [ResponderProcess("-q", "--seed", SEED, "--admin", "127.0.0.1:0",
                                  "--journal-size", str(JOURNAL_SIZE), "--rule", CANCEL_RULE,
                                  "--rule", UNAVAILABLE_RULE,
                                  listen=(f"{host}:0",)) for host in HOSTS]
    proxy = Kamailio()
    tmp_path.mkdir(parents=True, exist_ok=True)
    try:
        responders = [Instance(process.start()) for process in processes]
        ds_list = tmp_path / "dispatcher.list"
        ds_list.write_text(render_dispatcher_list(r.uri for r in responders))
        run = tmp_path / "kamailio-run"
        run.mkdir()
        address = (PROXY_HOST, free_udp_port(PROXY_HOST))
        defines = [f"LISTEN=udp:{address[0]}:{address[1]}", f'DS_LIST="{ds_list}"',
                   *TEST_DEFINES]
        argv = [exe, "-DD", "-E", "-f", str(CFG), "-Y", str(run), "-P",
                str(run / "kamailio.pid"), "-w", str(run), "-m", "64", "-M", "8",
                *(arg for define in defines for arg in ("-A", define))]
        proxy.start(argv, cwd=tmp_path, stdin=subprocess.DEVNULL)
        wait_proxy_answers(address, timeout=15)
        up = Cluster(responders, proxy, address)
        for r in responders:  # probing works: each responder got the dispatcher's OPTIONS
            wait_until(r.probed, f"a probe reached {r.uri}\n{up.context()}", timeout=10)
        yield up
    finally:
        proxy.close()
        for process in processes:
            process.close()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with started_cluster(tmp_path_factory.mktemp("cluster")) as up:
        yield up


@pytest.fixture
def cluster(shared_cluster: Cluster) -> Cluster:
    """The module's cluster, its journals emptied (for tests that leave every process up)."""
    for r in shared_cluster.responders:
        r.clear()
    return shared_cluster


def render_dispatcher_list(uris: Iterable[str]) -> str:
    """config/examples/scale-out/dispatcher.list with its destinations replaced."""
    shipped = (RECIPE / "dispatcher.list").read_text()
    comments = [line for line in shipped.splitlines() if line.startswith("#") or not line]
    return "\n".join([*comments, *(f"1 {uri} 0 0" for uri in uris)]) + "\n"


# --------------------------------------------------------------------------- SIPp


def sipp_argv(cluster: Cluster, scenario: str, tmp_path: Path, *, calls: int, rate: int,
              limit: int, service: str, hold_ms: int = 0) -> list[str]:
    host, port = cluster.address
    return [tool("sipp", "sip-tester"), f"{host}:{port}", "-sf", str(SCENARIOS / scenario),
            "-s", service, "-d", str(hold_ms), "-m", str(calls), "-r", str(rate), "-l", str(limit),
            "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
            "-timeout", "45s", "-timeout_error", "-nostdin",
            "-trace_err", "-error_file", str(tmp_path / "errors.log"),
            "-trace_stat", "-stf", str(tmp_path / "stat.csv"),
            "-trace_msg", "-message_file", str(tmp_path / "messages.log")]


def sipp_context(cluster: Cluster, tmp_path: Path, result: str) -> str:
    errors = tmp_path / "errors.log"
    return (f"{result}\nerrors.log:\n"
            f"{errors.read_text(errors='replace')[:3000] if errors.exists() else ''}\n"
            f"{cluster.context()}")


def run_calls(cluster: Cluster, scenario: str, tmp_path: Path, *, calls: int, rate: int,
              service: str) -> dict[str, str]:
    argv = sipp_argv(cluster, scenario, tmp_path, calls=calls, rate=rate, limit=20,
                     service=service)
    result = subprocess.run(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60, check=False)
    context = sipp_context(cluster, tmp_path, f"argv: {argv}\nexit {result.returncode}\n"
                           f"stdout tail:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr}")
    assert result.returncode == 0, context
    stats = sipp_stats(tmp_path / "stat.csv")
    assert stats["FailedCall(C)"] == "0", context
    assert stats["SuccessfulCall(C)"] == str(calls), context
    return stats


# --------------------------------------------------------------------------- tests


def test_the_recipe_parses(tmp_path: Path) -> None:
    """`kamailio -c` accepts the shipped file as it is, with the shipped defaults."""
    exe = kamailio_binary()
    ds_list = tmp_path / "dispatcher.list"
    shutil.copy(RECIPE / "dispatcher.list", ds_list)
    run = subprocess.run([exe, "-c", "-f", str(CFG), "-A", f'DS_LIST="{ds_list}"'],
                         capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "config file ok" in run.stdout + run.stderr


def test_any_instance_answers_a_dialog_set_up_on_another_the_same() -> None:
    """The premise of the recipe: the To tag is a keyed hash of Call-ID and From tag under
    the seed, so every instance knows every instance's dialogs, without a shared table."""
    processes = [ResponderProcess("-q", "--seed", SEED, listen=(f"{host}:0",))
                 for host in HOSTS]
    try:
        for process in processes:
            process.start()
        call_id, from_tag = unique("dialog"), "caller-tag-1"
        with SipClient(processes[0].address) as client:
            answers = client.exchange(client.request("INVITE", call_id=call_id,
                                                     from_tag=from_tag))
            ok = [a for a in answers if a.status == 200]
            assert len(ok) == 1, [a.status for a in answers]
            to_tag = re.search(r";tag=([^;>\s]+)", ok[0].get("to") or "")
            assert to_tag is not None, ok[0]
            byes, forged = [], []
            for process in processes:
                client.server = process.address
                [bye] = client.exchange(client.request(
                    "BYE", call_id=call_id, from_tag=from_tag, to_tag=to_tag.group(1), cseq=2,
                    branch="z9hG4bK-bye-same"))
                byes.append(bye)
                [wrong] = client.exchange(client.request(
                    "BYE", call_id=call_id, from_tag=from_tag, to_tag="f0rged", cseq=3))
                forged.append(wrong.status)
        assert [b.status for b in byes] == [200, 200, 200], [str(b) for b in byes]
        assert len({b.raw for b in byes}) == 1, "the three instances answered differently:\n" + \
            "\n".join(str(b) for b in byes)
        assert forged == [481, 481, 481]
    finally:
        for process in processes:
            process.close()


def test_every_responder_takes_a_share_and_keeps_its_calls(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    calls = 60
    run_calls(cluster, "proxied_call.xml", tmp_path, calls=calls, rate=20, service="bob")
    per_instance = [r.calls() for r in cluster.responders]
    shares = [sum(1 for entries in c.values() if entries[0]["method"] == "INVITE")
              for c in per_instance]
    assert sum(shares) == calls and all(shares), (shares, cluster.context())
    seen: dict[str, int] = {}
    for index, instance_calls in enumerate(per_instance):
        for call_id, entries in instance_calls.items():
            assert call_id not in seen, f"{call_id} reached instances {seen[call_id]} and {index}"
            seen[call_id] = index
            # (Kamailio's workers may pass a BYE on before the ACK that SIPp sent first)
            by_method = {str(e["method"]): e for e in entries}
            assert sorted(str(e["method"]) for e in entries) == ["ACK", "BYE", "INVITE"], \
                (call_id, entries)
            assert by_method["INVITE"]["statuses"] == [100, 180, 200], entries
            assert by_method["BYE"]["statuses"] == [200], entries
            # every request came through the proxy
            assert all(str(e["source"]).startswith(f"{PROXY_HOST}:") for e in entries)


def test_cancel_through_the_proxy_reaches_the_invites_instance(cluster: Cluster,
                                                               tmp_path: Path) -> None:
    calls = 12
    run_calls(cluster, "proxied_cancel.xml", tmp_path, calls=calls, rate=10, service="cancel")
    invites = 0
    for responder in cluster.responders:
        for call_id, entries in responder.calls().items():
            by_method = {str(e["method"]): e for e in entries}
            # the ACK is Kamailio's own, for the 487 (RFC 3261 section 17.1.1.3: hop by hop)
            assert sorted(by_method) == ["ACK", "CANCEL", "INVITE"], \
                (responder.uri, call_id, entries)
            assert by_method["INVITE"]["statuses"] == [180, 487], entries  # no 200
            assert by_method["CANCEL"]["statuses"] == [200], entries
            assert by_method["ACK"]["statuses"] == [], entries
            invites += 1
    assert invites == calls, cluster.context()


def test_a_503_a_rule_answers_reaches_the_caller_not_the_next_responder(
        cluster: Cluster) -> None:
    """Failover is for responders that are gone: a 503 is what the rules said (without
    -A WITH_FAILOVER_503), so it reaches the caller and no other instance sees the call."""
    call_id, branch, from_tag = unique("unavailable"), "z9hG4bK-unavailable-1", "u-tag"
    uri = f"sip:unavailable@{cluster.address[0]}:{cluster.address[1]}"
    with SipClient(cluster.address) as client:
        client.send(client.request("INVITE", uri=uri, call_id=call_id, branch=branch,
                                   from_tag=from_tag))
        statuses = [client.recv_response().status]
        while statuses[-1] < 200:
            statuses.append(client.recv_response().status)
        final = parse_response(client.received[-1].data)
        to_tag = re.search(r";tag=([^;>\s]+)", final.get("to") or "")
        client.send(client.request("ACK", uri=uri, call_id=call_id, branch=branch,
                                   from_tag=from_tag, to_tag=to_tag.group(1) if to_tag else None))
    assert statuses[-1] == 503 and final.get("server") == "sip-responder", (statuses, final)
    got = [r.uri for r in cluster.responders if r.journal() and call_id in r.calls()]
    assert len(got) == 1, (got, cluster.context())


def test_a_killed_responder_costs_no_call_once_marked_down(tmp_path: Path) -> None:
    with started_cluster(tmp_path / "cluster") as cluster:
        kill_one_mid_run(cluster, tmp_path)


def kill_one_mid_run(cluster: Cluster, tmp_path: Path) -> None:
    victim = cluster.responders[1]
    survivors = [cluster.responders[0], cluster.responders[2]]
    calls = 100
    argv = sipp_argv(cluster, "proxied_call.xml", tmp_path, calls=calls, rate=10, limit=60,
                     service="bob", hold_ms=HOLD_MS)
    sipp = subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(victim.journal("INVITE")) >= 3,
                   f"{victim.uri} answered 3 INVITEs\n{cluster.context()}", timeout=20)
        mark = len(cluster.proxy.output)
        victim.process.send_signal(signal.SIGKILL)  # the responder this test started, by PID
        cluster.proxy.wait_output(rf"scale-out: responder down: {re.escape(victim.uri)}\b",
                                  timeout=10, after=mark)
        marked_down = time.time()  # a little after Kamailio marked it: conservative
        try:
            _, stderr = sipp.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            sipp.kill()
            sipp.communicate()
            raise AssertionError(f"SIPp did not finish\n{cluster.context()}") from None
    finally:
        if sipp.poll() is None:
            sipp.kill()  # our own child
            sipp.wait(5)

    trace = sipp_trace(tmp_path / "messages.log")
    started: dict[str, float] = {}
    completed: set[str] = set()
    for traced in trace:
        call_id = traced.message.get("call-id") or ""
        if traced.matches(True, "INVITE ") and call_id not in started:
            started[call_id] = traced.at.timestamp()
        if traced.matches(False, "SIP/2.0 200", cseq="2 BYE"):
            completed.add(call_id)
    after = {c for c, at in started.items() if at > marked_down}
    during = set(started) - after
    stats = sipp_stats(tmp_path / "stat.csv")
    retried = cluster.proxy.output.count(f"no answer from {victim.uri} to INVITE:")
    resent = cluster.proxy.output.count(f"no answer from {victim.uri} to BYE in a dialog")
    summary = (f"{len(started)} calls started, {len(during)} before the mark-down "
               f"({len(during - completed)} of them not completed), {len(after)} after it "
               f"({len(after - completed)} not completed); SIPp: "
               f"{stats.get('SuccessfulCall(C)')} successful, {stats.get('FailedCall(C)')} "
               f"failed; exit {sipp.returncode}; Kamailio retried {retried} INVITEs and sent "
               f"{resent} BYEs to another responder")
    context = sipp_context(cluster, tmp_path, f"{summary}\nSIPp stderr: {stderr!r}")
    assert len(started) == calls, context
    assert len(after) >= 20, f"too few calls after the mark-down to tell: {context}"
    assert after <= completed, f"calls lost after the mark-down: {sorted(after - completed)}\n"\
        f"{context}"
    served = set().union(*(r.calls() for r in survivors))
    unserved = after - served
    assert not unserved, "calls after the mark-down no survivor served:\n" + "\n".join(
        f"{t.stamp} {t.direction} {t.first_line} {t.message.get('contact')}"
        for t in trace if (t.message.get("call-id") or "") in unserved) + \
        f"\nmarked down at {marked_down}\n{context}"
    # In flight at the kill: an INVITE the dead responder never answered was retried on the
    # next one after FR_TIMER; the BYE of a call it had answered went to another one, which
    # knows the dialog by its To tag. Neither cost the call.
    assert resent >= 1, context
    assert during <= completed, f"calls in flight lost: {sorted(during - completed)}\n{context}"
    print(summary)  # shown with -s / -rA: what the calls in flight went through

    # Started again on its address, the responder answers the probes and is taken back.
    mark = len(cluster.proxy.output)
    with ResponderProcess("-q", "--seed", SEED, listen=(f"{victim.address[0]}:"
                                                         f"{victim.address[1]}",)):
        cluster.proxy.wait_output(rf"scale-out: responder up: {re.escape(victim.uri)}\b",
                                  timeout=10, after=mark)
