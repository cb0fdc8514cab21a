"""SIPVicious (svmap, svwar, svcrack) against ``config/examples/lab-pbx.yaml``.

The installed ``sip-responder`` runs the lab PBX profile on loopback; the real tools scan it
through :mod:`responder.testing.sipvicious`. svmap must find exactly one device with the profile's
Server name, svwar exactly the extensions of its ``auth.users`` (as ``reqauth``) and nothing
else, svcrack the weak password of 1001, with and without compact headers (``-c``).

Without SIPVicious these tests skip with the reason; with ``CI`` set they fail instead
(CI installs ``sipvicious`` with the test extra). svmap waits 3 s for late answers on
every run, so it runs three times only; everything else takes well under a second.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support import ResponderProcess, has_ipv6_loopback, unique

from responder.testing import sipvicious as sv

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
LAB_PBX = ROOT / "config" / "examples" / "lab-pbx.yaml"
PROFILE = yaml.safe_load(LAB_PBX.read_text(encoding="utf-8"))
SERVER_NAME = PROFILE["identity"]["server"].split(",")[0].strip()  # what svmap shows
EXISTING = sorted(PROFILE["auth"]["users"])                         # ["1000", "1001", "2000"]
WEAK_USER, WEAK_PASSWORD = "1001", "1234"
SCAN = "995-1003,1999-2001"   # the three extensions and nine that do not exist
MODES = [pytest.param(False, id="long-headers"), pytest.param(True, id="compact")]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tools() -> str:
    """SIPVicious's version; skips (fails under CI) when the tools are not installed."""
    try:
        return sv.version()
    except sv.SipviciousMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}; CI must install it (the test extra has sipvicious)")
        pytest.skip(str(exc))


def _start(*args: str, listen: tuple[str, ...] = ("127.0.0.1:0",)) -> ResponderProcess:
    return ResponderProcess(*args, listen=listen).start()


@pytest.fixture(scope="module")
def pbx() -> Iterator[ResponderProcess]:
    server = _start("--rules", str(LAB_PBX), "-q")
    try:
        yield server
        assert server.alive, f"the responder died:\n{server.stderr_text()}"
    finally:
        server.close()


@pytest.fixture(scope="module")
def pbx6() -> Iterator[ResponderProcess]:
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    server = _start("--rules", str(LAB_PBX), "-q", listen=("[::1]:0",))
    try:
        yield server
    finally:
        server.close()


# --------------------------------------------------------------------------- the profile


def test_the_profile_answers_the_way_the_tools_need(pbx: ResponderProcess) -> None:
    """Without SIPVicious: unknown extensions always get the same status line, existing ones
    a challenge svcrack can parse, and REGISTER/OPTIONS never get a 1xx."""
    with pbx.client() as client:
        lines = set()
        for user in ("3141592653", "999", "1002", "3141592653"):
            for method in ("REGISTER", "OPTIONS", "INVITE"):
                uri = "sip:127.0.0.1" if method == "REGISTER" else f"sip:{user}@127.0.0.1"
                got = client.exchange(client.request(
                    method, uri=uri, to_uri=f"sip:{user}@127.0.0.1", call_id=unique()))
                assert [r.status for r in got] == [404], [str(r) for r in got]
                lines.add(got[0].raw.split(b"\r\n", 1)[0])
        assert lines == {b"SIP/2.0 404 Not Found"}
        for user in EXISTING:
            for method in ("REGISTER", "OPTIONS", "INVITE"):
                uri = "sip:127.0.0.1" if method == "REGISTER" else f"sip:{user}@127.0.0.1"
                got = client.exchange(client.request(
                    method, uri=uri, to_uri=f"sip:{user}@127.0.0.1", call_id=unique()))
                assert [r.status for r in got] == [401], [str(r) for r in got]
                raw = got[0].raw.decode()
                assert raw.startswith("SIP/2.0 401 Unauthorized\r\n")
                assert "\r\nWWW-Authenticate: Digest realm=\"lab-pbx\", nonce=\"" in raw
                assert "algorithm=MD5, qop=\"auth\"\r\n" in raw
                assert f"\r\nServer: {PROFILE['identity']['server']}\r\n" in raw
        ping = client.exchange(client.request("OPTIONS", uri="sip:127.0.0.1",
                                              to_uri="sip:127.0.0.1", call_id=unique()))
        assert [r.status for r in ping] == [200]


# --------------------------------------------------------------------------- svmap


@pytest.mark.parametrize("compact", MODES)
def test_svmap_finds_one_device_with_the_profiles_server_name(
    tools: str, pbx: ResponderProcess, compact: bool
) -> None:
    host, port = pbx.address
    found = sv.svmap(host, port, compact=compact)
    assert found == [sv.MapHost(address=f"{host}:{port}", host=host, port=port,
                                user_agent=SERVER_NAME, fingerprint=None)]


# --------------------------------------------------------------------------- svwar


@pytest.mark.parametrize("compact", MODES)
@pytest.mark.parametrize("method", ["REGISTER", "OPTIONS", "INVITE"])
def test_svwar_finds_exactly_the_existing_extensions(
    tools: str, pbx: ResponderProcess, method: str, compact: bool
) -> None:
    found = sv.svwar(*pbx.address, SCAN, method=method, compact=compact)
    assert sorted(found, key=lambda e: e.extension) == [
        sv.Extension(extension=e, state="reqauth") for e in EXISTING
    ]


def test_svwar_reads_a_dictionary_of_names(tools: str, pbx: ResponderProcess) -> None:
    names = ["alice", "1000", "operator", "2000", "bob", "10001"]
    found = sv.svwar(*pbx.address, names)
    assert sorted(e.extension for e in found) == ["1000", "2000"]
    assert {e.state for e in found} == {"reqauth"}


def test_svwar_errors_are_not_silent(tools: str) -> None:
    """A server that challenges unknown users stops svwar at its first request: an error,
    not an empty result."""
    server = _start("--rule", "REGISTER->401", "-q")
    try:
        with pytest.raises(sv.SipviciousError, match="authentication request for an unknown"):
            sv.svwar(*server.address, "1000-1002")
    finally:
        server.close()


# --------------------------------------------------------------------------- svcrack


@pytest.mark.parametrize("compact", MODES)
def test_svcrack_cracks_the_weak_password(
    tools: str, pbx: ResponderProcess, compact: bool
) -> None:
    found = sv.svcrack(*pbx.address, WEAK_USER, "1200-1299", compact=compact)
    assert found == [sv.Cracked(username=WEAK_USER, password=WEAK_PASSWORD)]


def test_svcrack_with_a_dictionary_file(
    tools: str, pbx: ResponderProcess, tmp_path: Path
) -> None:
    words = tmp_path / "words.txt"
    words.write_text("password\nsecret\n0000\n1234\nletmein\n", encoding="utf-8")
    found = sv.svcrack(*pbx.address, WEAK_USER, words, reuse_nonce=True)
    assert found == [sv.Cracked(username=WEAK_USER, password=WEAK_PASSWORD)]


def test_svcrack_without_qop_uses_the_rfc2069_digest(tools: str, tmp_path: Path) -> None:
    """With ``qop: none`` svcrack computes MD5(HA1:nonce:HA2) although its Authorization
    says qop=auth; the responder checks what it offered."""
    profile = tmp_path / "lab-pbx-no-qop.yaml"
    text = LAB_PBX.read_text(encoding="utf-8")
    assert "  qop: auth\n" in text
    profile.write_text(text.replace("  qop: auth\n", "  qop: none\n"), encoding="utf-8")
    server = _start("--rules", str(profile), "-q")
    try:
        found = sv.svcrack(*server.address, WEAK_USER, ["0000", "1234"])
    finally:
        server.close()
    assert found == [sv.Cracked(username=WEAK_USER, password=WEAK_PASSWORD)]


def test_svcrack_on_an_unknown_extension_finds_nothing(
    tools: str, pbx: ResponderProcess
) -> None:
    assert sv.svcrack(*pbx.address, "999", "1-5") == []


# --------------------------------------------------------------------------- IPv6


def test_all_three_tools_over_ipv6(tools: str, pbx6: ResponderProcess) -> None:
    host, port = pbx6.address
    assert host == "::1"
    assert sv.svmap(host, port) == [sv.MapHost(f"::1:{port}", "::1", port, SERVER_NAME, None)]
    assert sorted(e.extension for e in sv.svwar(host, port, SCAN)) == EXISTING
    assert sv.svcrack(host, port, WEAK_USER, range(1230, 1240)) == [
        sv.Cracked(WEAK_USER, WEAK_PASSWORD)]


# --------------------------------------------------------------------------- the library


def test_only_loopback_targets(tmp_path: Path) -> None:
    for host in ("10.0.0.1", "localhost", "0.0.0.0", "::", "127.0.0.2", "example.org"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1 or ::1"):
            sv.svmap(host, 5060)
    with pytest.raises(ValueError, match="port"):
        sv.svwar("127.0.0.1", 0)
    with pytest.raises(ValueError, match="numeric range"):
        sv.svcrack("127.0.0.1", 5060, "1001", "passwords.txt")
    with pytest.raises(ValueError, match="not a file"):
        sv.svcrack("127.0.0.1", 5060, "1001", tmp_path / "missing.txt")


def test_parse_table_cuts_columns_at_the_border() -> None:
    out = (
        "+-----------------+--------------------------+\n"
        "| SIP Device      | User Agent               |\n"
        "+=================+==========================+\n"
        "| 127.0.0.1:5060  | Odd | Name, with a comma |\n"
        "+-----------------+--------------------------+\n"
        "| ::1:5062        | x                        |\n"
        "+-----------------+--------------------------+\n"
    )
    assert sv.parse_table("log line\n" + out) == [
        {"SIP Device": "127.0.0.1:5060", "User Agent": "Odd | Name, with a comma"},
        {"SIP Device": "::1:5062", "User Agent": "x"},
    ]
    assert sv.parse_table("") == []


def test_a_missing_tool_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import shutil

    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda *a, **k: None)
    with pytest.raises(sv.SipviciousMissing, match="pip install sipvicious"):
        sv.svmap("127.0.0.1", 5060)
    assert not sv.available()
