"""Hypothesis strategies for HTTP/1.1 request streams, settings profiles and a per-example watchdog.

A stream is one or more requests as a client would send them on one connection (pipelined,
with optional empty lines between them), built from parts that are valid most of the time and
odd some of the time, then possibly mutated (byte flips, insertions, deletions, truncation,
duplication). What the parts cover:

* request line: every registered method, lower/mixed-case, unknown and non-token methods;
  origin-, absolute-, asterisk- and authority-form targets, with odd bytes (SP, HTAB, CTL, DEL,
  obs-text) and lengths at the ``limit_request_line`` boundary; versions 1.0/1.1 and
  0.9/1.2/2.0/3.0/garbage/missing; extra spaces, tabs, bare LF/CR line ends.
* fields: valid tokens and values (OWS, obs-text, inner spaces, any case), obs-fold, bare LF,
  CR and other CTLs in values, space before the colon, empty names, lines without a colon, lines
  at the ``limit_request_field_size`` boundary, field counts at ``limit_request_fields``;
  0..3 Host fields, Content-Length and Transfer-Encoding variants and duplicates, CL+TE,
  Connection/Upgrade/Expect/Forwarded combinations, complete and partial WebSocket handshakes.
* bodies: Content-Length exact, short and long; chunked with valid and invalid sizes
  (case, leading zeros, overflow, signs, spaces), extensions (valid, unquoted-space, unterminated
  quotes), data longer or shorter than announced, bad CRLFs, trailers (valid, framing fields,
  obs-fold, over the limits).

``valid_streams`` builds only requests that are valid by construction and carries the exact
events both parsers must produce (an oracle independent of asgiserve's own validation).

Profiles: ``HYPOTHESIS_PROFILE=ci`` (the default: derandomized, bounded, no example database,
so CI is reproducible) or ``HYPOTHESIS_PROFILE=long`` (random, 100,000 examples per property);
``FUZZ_EXAMPLES=N`` overrides the number of examples of either. See docs/fuzzing.md.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from asgiserve.http.framing import METHODS

# -- profiles ------------------------------------------------------------------------------

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
           HealthCheck.large_base_example]
_override = os.environ.get("FUZZ_EXAMPLES")
# No "explain" phase: on Python 3.11 its line tracer makes reporting a failure take minutes.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]

settings.register_profile(
    "ci", max_examples=int(_override or 400), deadline=None, derandomize=True, database=None,
    print_blob=True, suppress_health_check=_HEALTH, phases=_PHASES,
)
settings.register_profile(
    "long", max_examples=int(_override or 100_000), deadline=None, derandomize=False, database=None,
    print_blob=True, suppress_health_check=_HEALTH, phases=_PHASES,
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    PROFILE = "ci"
BASE = settings.get_profile(PROFILE)
LONG = PROFILE == "long"


def fuzz_settings(scale: float = 1.0) -> settings:
    """The selected profile, with ``scale`` times its number of examples."""
    return settings(BASE, max_examples=max(10, int(BASE.max_examples * scale)))


# -- watchdog ------------------------------------------------------------------------------

class Hang(Exception):
    """An example ran longer than the watchdog allows: treated as a failure (a hang)."""


EXAMPLE_CPU_SECONDS = 5.0
EXAMPLE_WALL_SECONDS = 20.0


@contextlib.contextmanager
def watchdog(cpu_seconds: float = EXAMPLE_CPU_SECONDS, wall_seconds: float = EXAMPLE_WALL_SECONDS) -> Iterator[None]:
    """Fail an example that burns more than ``cpu_seconds`` of CPU (SIGVTALRM, so pytest-timeout's
    SIGALRM is untouched) or takes more than ``wall_seconds`` of wall time."""
    armed = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    previous: Any = None
    if armed:
        def expired(signum: int, frame: Any) -> None:
            raise Hang(f"example used more than {cpu_seconds} s of CPU")

        previous = signal.signal(signal.SIGVTALRM, expired)
        signal.setitimer(signal.ITIMER_VIRTUAL, cpu_seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
            signal.signal(signal.SIGVTALRM, previous)
    elapsed = time.perf_counter() - start
    if elapsed > wall_seconds:
        raise Hang(f"example took {elapsed:.1f} s")


# -- limits --------------------------------------------------------------------------------

DEFAULT: dict[str, int] = {}
SMALL = {"limit_request_line": 64, "limit_request_fields": 8, "limit_request_field_size": 64}
TINY = {"limit_request_line": 40, "limit_request_fields": 5, "limit_request_field_size": 28}
MEDIUM = {"limit_request_line": 300, "limit_request_fields": 20, "limit_request_field_size": 200}
CONFIGS = [DEFAULT, DEFAULT, SMALL, MEDIUM, TINY]


@dataclass(frozen=True)
class Limits:
    line: int = 8190
    fields: int = 100
    field_size: int = 8190

    @classmethod
    def of(cls, config: dict[str, int]) -> "Limits":
        return cls(config.get("limit_request_line", 8190), config.get("limit_request_fields", 100),
                   config.get("limit_request_field_size", 8190))


# -- byte classes --------------------------------------------------------------------------

TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = bytes(range(0x21, 0x7F))
OBS_TEXT = bytes(range(0x80, 0x100))
CTL = bytes(range(0x00, 0x20)) + b"\x7f"
SAFE_PATH = b"abcxyzABCXYZ0189-._~!$&'()*+,;=:@/%?"
ODD_BYTES = b"\r\n\x00\t \x7f\x80\xff:;,\"\\(=0aZ/"
SPECIAL_NAMES = {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"forwarded",
                 b"x-forwarded-for", b"x-forwarded-proto", b"upgrade"}
VALID_METHODS = sorted(METHODS)
COMMON_METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH"]
WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def _chance(draw: Callable[..., Any], percent: int) -> bool:
    """True ``percent`` % of the time; shrinks toward False (the plain, valid choice)."""
    return bool(draw(st.integers(0, 99)) >= 100 - percent)


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


def _bytes(alphabet: bytes, min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[bytes]:
    return st.text(st.sampled_from(alphabet.decode("latin-1")), min_size=min_size, max_size=max_size).map(_latin1)


def _case(draw: Callable[..., Any], name: bytes) -> bytes:
    style = draw(st.sampled_from(["title", "lower", "upper", "mixed"]))
    if style == "lower":
        return name.lower()
    if style == "upper":
        return name.upper()
    if style == "title":
        return b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))
    mask = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return bytes(c ^ 0x20 if up and chr(c).isalpha() else c for c, up in zip(name, mask))


# -- request line ------------------------------------------------------------------------

ODD_METHODS = [b"get", b"Get", b"post", b"FOO", b"GETS", b"GE", b"PRI", b"HTTP/1.1", b"", b"GE(T", b"G\x00T",
               b"G T", b"\xc3\xa9", b"\x16\x03\x01", b"CONNECTX", b"M-SEARCHX", b"-", b"1"]
ODD_VERSIONS = [b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/3.0", b"HTTP/9.9", b"HTTP/0.0", b"http/1.1",
                b"HTTP/1.10", b"HTTP/11", b"HTTP/1.x", b"HTTP/1.1 ", b"", b"HTTP/", b"HTTP/1.", b"HTTPS/1.1",
                b"HTTP/1,1", b"HTTP/ 1.1", b"HTTP/1.1\x00", b"XTTP/1.1", b"HTTP/01.1"]
ODD_TARGETS = [b"", b"foo", b"?x", b"*", b"a:80", b"h-t://a/", b"http://", b"http:///x", b"http://a b", b"/a b",
               b"/a\tb", b"/a\x00b", b"/a\x7fb", b"/caf\xc3\xa9", b"//", b"/#", b"http://a/\xff", b"[::1]:80",
               b"example.com:", b":80", b"HTTP://A:B@C:1?q", b"http://a?b", b"1http://a/", b"http:/a",
               b"/%", b"*x", b"/\r", b"/\n"]


@st.composite
def methods(draw: Callable[..., Any], odd: bool) -> bytes:
    if odd and _chance(draw, 30):
        return bytes(draw(st.one_of(st.sampled_from(ODD_METHODS), _bytes(TCHAR, 1, 10),
                                    st.sampled_from(VALID_METHODS).map(bytes.lower))))
    if _chance(draw, 30):
        return bytes(draw(st.sampled_from(VALID_METHODS)))
    return bytes(draw(st.sampled_from(COMMON_METHODS)))


@st.composite
def hosts(draw: Callable[..., Any], port: bool = False) -> bytes:
    name = draw(st.sampled_from([b"a", b"example.com", b"localhost", b"xn--caf-dma.example", b"10.0.0.1",
                                 b"[::1]", b"[2001:db8::1]"]))
    if port or _chance(draw, 40):
        name += b":" + str(draw(st.integers(0, 65535))).encode()
    return bytes(name)


@st.composite
def targets(draw: Callable[..., Any], method: bytes, odd: bool, limits: Limits) -> bytes:
    if odd and _chance(draw, 15):
        # Near the request-line limit: canonical size limit - 1 .. limit + 2, or far over.
        room = limits.line - len(method) - 10
        size = max(1, room + draw(st.sampled_from([-1, 0, 1, 2, 50, 5 * limits.line])))
        return b"/" + b"a" * (size - 1)
    if odd and _chance(draw, 20):
        target = draw(st.sampled_from(ODD_TARGETS))
        if _chance(draw, 50):  # an odd byte somewhere in an otherwise fine target
            base = b"/" + draw(_bytes(SAFE_PATH, 0, 8))
            at = draw(st.integers(0, len(base)))
            target = base[:at] + bytes([draw(st.sampled_from(ODD_BYTES + OBS_TEXT[:3] + CTL[:3]))]) + base[at:]
        return bytes(target)
    if method == b"CONNECT":
        return draw(hosts(port=True)) if not odd or _chance(draw, 70) else draw(st.sampled_from([b"/", b"a", b"*"]))
    if method == b"OPTIONS" and _chance(draw, 30):
        return b"*"
    if _chance(draw, 20):
        scheme = draw(st.sampled_from([b"http", b"https", b"HTTP", b"ws", b"Https"]))
        userinfo = b"u:p@" if _chance(draw, 10) else b""
        rest = draw(st.sampled_from([b"", b"/", b"/p/a", b"?q=1", b"/x?y=%20"]))
        return scheme + b"://" + userinfo + draw(hosts()) + rest
    return b"/" + draw(_bytes(VCHAR if _chance(draw, 30) else SAFE_PATH, 0, 16))


@st.composite
def versions(draw: Callable[..., Any], odd: bool) -> bytes:
    if odd and _chance(draw, 12):
        return bytes(draw(st.sampled_from(ODD_VERSIONS)))
    return b"HTTP/1.1" if _chance(draw, 80) else b"HTTP/1.0"


def _sep(draw: Callable[..., Any], odd: bool) -> bytes:
    if odd and _chance(draw, 8):
        return bytes(draw(st.sampled_from([b"  ", b"\t", b"", b" \t", b"   ", b"\x0b"])))
    return b" "


def _eol(draw: Callable[..., Any], odd: bool) -> bytes:
    if odd and _chance(draw, 4):
        return bytes(draw(st.sampled_from([b"\n", b"\r", b"\r\r\n", b"\n\r", b" \r\n"])))
    return b"\r\n"


# -- fields ------------------------------------------------------------------------------

@dataclass
class Field:
    raw: bytes  # the line without its terminator
    name: bytes  # lower-cased
    value: bytes  # OWS stripped (what a parser must report when the line is valid)
    valid: bool = True


def _field(draw: Callable[..., Any], name: bytes, value: bytes) -> Field:
    lead = draw(st.sampled_from([b" ", b" ", b"", b"  ", b"\t", b" \t"]))
    trail = draw(st.sampled_from([b"", b"", b"", b"", b"", b"", b" ", b"\t", b" \t "]))
    raw = _case(draw, name) + b":" + lead + value + trail
    return Field(raw, name.lower(), value.strip(b" \t"))


@st.composite
def generic_fields(draw: Callable[..., Any]) -> Field:
    name = draw(st.one_of(
        st.sampled_from([b"accept", b"user-agent", b"cookie", b"x-dup", b"sec-websocket-protocol", b"te",
                         b"trailer", b"keep-alive", b"content-type", b"x-forwarded-host", b"transfer-encodings",
                         b"content-length2", b"hostname"]),
        _bytes(TCHAR, 1, 12),
    ))
    if name.lower() in SPECIAL_NAMES:
        name = b"x-" + name
    inner = draw(st.lists(st.one_of(_bytes(VCHAR, 1, 8), _bytes(OBS_TEXT, 1, 3)), max_size=3))
    value = draw(st.sampled_from([b" ", b"  ", b"\t"])).join(inner)
    return _field(draw, name, value)


@st.composite
def host_fields(draw: Callable[..., Any], odd: bool) -> Field:
    if odd and _chance(draw, 20):
        value = draw(st.sampled_from([b"", b"a b", b"a,b", b"a:b:c", b"[::1", b"@", b"a/b", b"a\xff"]))
    else:
        value = draw(hosts())
    return _field(draw, b"host", bytes(value))


CL_ODD = [b"3, 3", b"0, 35", b"+3", b"-1", b"0x3", b"1 2", b"", b"18446744073709551616",
          b"18446744073709551615", b"99999999999999999999999", b"3 3", b"\xd9\xa3", b"3;", b"1e2", b"00000000000000000000003"]
TE_ODD = [b"gzip", b"gzip, chunked", b"chunked, identity", b"identity", b"xchunked", b"chunked, chunked",
          b"chunked;q=1", b"chunked,", b",chunked", b"chunked ,", b"deflate", b"chunk", b"chunked\x00", b"\"chunked\""]
CONNECTION_VALUES = [b"close", b"keep-alive", b"Keep-Alive", b"upgrade", b"Upgrade", b"keep-alive, Upgrade",
                     b"UPGRADE", b"upgraded", b"close, upgrade", b"Upgrade, HTTP2-Settings", b"te", b",upgrade,",
                     b"up grade"]
UPGRADE_VALUES = [b"websocket", b"WebSocket", b"h2c", b"h2c, websocket", b"websocket/13", b"websockets",
                  b"TLS/1.0", b"", b"websocket, h2c"]


@st.composite
def odd_fields(draw: Callable[..., Any], limits: Limits) -> Field:
    """A field line that breaks a rule (or sits exactly on a limit)."""
    kind = draw(st.sampled_from(["space-colon", "tab-colon", "empty-name", "no-colon", "fold", "ctl", "bad-name",
                                 "near-limit", "bare-cr", "huge", "nul-name", "whitespace-pad", "generative"]))
    if kind == "generative":  # any short line over the bytes that matter to the field grammar
        return Field(draw(_bytes(b"aZ0-:;= \t\"\\\x80\x7f\x00(),/\r\n", 0, 10)), b"", b"", valid=False)
    if kind == "space-colon":
        raw = draw(st.sampled_from([b"Host", b"X-A", b"Content-Length", b"Transfer-Encoding"])) + b" : v"
    elif kind == "tab-colon":
        raw = b"X-A\t: v"
    elif kind == "empty-name":
        raw = b": value"
    elif kind == "no-colon":
        raw = draw(st.sampled_from([b"Bad Header", b"X-A", b"chunked", b""]))
    elif kind == "fold":
        raw = draw(st.sampled_from([b" folded", b"\tfolded", b" ", b" chunked"]))
    elif kind == "ctl":
        byte = bytes([draw(st.sampled_from(CTL.replace(b"\t", b"")))])
        raw = b"X-A: a" + byte + b"b"
    elif kind == "bad-name":
        raw = draw(st.sampled_from([b"X(A): 1", b"X-\xc3\xa9: 1", b"X/A: 1", b"[x]: 1", b"X\"A: 1", b"X@A: 1"]))
    elif kind == "nul-name":
        raw = b"X\x00A: 1"
    elif kind == "bare-cr":
        raw = b"X-A: a\rb"
    elif kind == "whitespace-pad":  # legal, but whitespace does not count toward the field size
        raw = b"X-Pad:" + b" " * draw(st.integers(0, 3 * limits.field_size)) + b"v" + b" " * draw(st.integers(0, 50))
        return Field(raw, b"x-pad", b"v")
    else:  # near-limit / huge: canonical size (name + ": " + value) limit - 1 .. limit + 2, or far over
        delta = draw(st.sampled_from([-1, 0, 1, 2])) if kind == "near-limit" else 3 * limits.field_size
        name = b"X-Big"
        size = max(0, limits.field_size + delta - len(name) - 2)
        raw = name + b": " + b"v" * size
        return Field(raw, b"x-big", b"v" * size, valid=limits.field_size + delta <= limits.field_size)
    return Field(raw, b"", b"", valid=False)


@st.composite
def requests(draw: Callable[..., Any], limits: Limits, odd: bool) -> "Request":
    """One request: head and body, valid unless ``odd`` parts were drawn."""
    method = draw(methods(odd))
    target = draw(targets(method, odd, limits))
    version = draw(versions(odd))
    line = method + _sep(draw, odd) + target + _sep(draw, odd) + version
    if odd and _chance(draw, 2):
        line = method + b" " + target  # HTTP/0.9 style, no version
    is10 = version == b"HTTP/1.0"

    fields: list[Field] = []
    # Host: exactly one, except in odd requests.
    host_count = 1 if not is10 else draw(st.sampled_from([0, 1]))
    if odd and _chance(draw, 10):
        host_count = draw(st.integers(0, 3))
    fields += [draw(host_fields(odd)) for _ in range(host_count)]

    # Body framing.
    framing = draw(st.sampled_from(["none", "none", "length", "length", "chunked"]))
    if is10 and framing == "chunked" and not odd:
        framing = "length"
    if method == b"CONNECT" and not odd:
        framing = "none"
    if odd and _chance(draw, 8):
        framing = draw(st.sampled_from(["both", "length-odd", "te-odd", "length-dup", "te-dup", "te-both-order"]))
    body = b""
    body_expect = b""
    chunked_body = None
    declared = 0
    if framing in ("length", "length-odd", "length-dup", "both"):
        declared = draw(st.integers(0, 40)) if _chance(draw, 95) else draw(st.integers(41, 5000))
        value = str(declared).encode()
        if framing == "length" and _chance(draw, 10):
            value = b"0" * draw(st.integers(1, 3)) + value
        if framing == "length-odd":
            value = bytes(draw(st.sampled_from(CL_ODD)))
        fields.append(_field(draw, b"content-length", value))
        if framing == "length-dup":
            fields.append(_field(draw, b"content-length", draw(st.sampled_from([value, b"0", b"35"]))))
        actual = declared
        if odd and _chance(draw, 15):
            actual = max(0, declared + draw(st.sampled_from([-5, -1, 1, 5, 40])))
        body = draw(st.sampled_from([b"x", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"0\r\n\r\n", b"\r\n"]))
        body = (body * (actual // max(1, len(body)) + 1))[:actual]
        body_expect = body[:declared]
    if framing in ("chunked", "te-odd", "te-dup", "both", "te-both-order"):
        te = b"chunked"
        if _chance(draw, 20):
            te = draw(st.sampled_from([b"Chunked", b"CHUNKED", b"ChUnKeD"]))
        if framing == "te-odd":
            te = draw(st.sampled_from(TE_ODD))
        te_field = _field(draw, b"transfer-encoding", te)
        if framing == "te-both-order":
            fields.insert(0, te_field)
            fields.append(_field(draw, b"content-length", draw(st.sampled_from([b"0", b"4", b"x"]))))
        else:
            fields.append(te_field)
        if framing == "te-dup":
            fields.append(_field(draw, b"transfer-encoding", draw(st.sampled_from([b"chunked", b"identity"]))))
        chunked_body = draw(chunked_bodies(limits, odd))
        body = chunked_body[0]
        body_expect = chunked_body[1]

    # Connection / Upgrade / Expect / Forwarded / a WebSocket handshake.
    if _chance(draw, 25):
        fields.append(_field(draw, b"connection", draw(st.sampled_from(CONNECTION_VALUES))))
        if odd and _chance(draw, 20):
            fields.append(_field(draw, b"connection", draw(st.sampled_from(CONNECTION_VALUES))))
    if _chance(draw, 20):
        fields.append(_field(draw, b"upgrade", draw(st.sampled_from(UPGRADE_VALUES))))
    if _chance(draw, 10):
        fields.append(_field(draw, b"connection", b"Upgrade"))
        fields.append(_field(draw, b"upgrade", b"websocket"))
        if _chance(draw, 70):
            fields.append(_field(draw, b"sec-websocket-key", WS_KEY if _chance(draw, 90) else b"short"))
            fields.append(_field(draw, b"sec-websocket-version", b"13" if _chance(draw, 90) else b"8"))
    if _chance(draw, 8):
        fields.append(_field(draw, b"expect", draw(st.sampled_from([b"100-continue", b"100-Continue", b"foo"]))))
    if _chance(draw, 8):
        name = draw(st.sampled_from([b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"]))
        fields.append(_field(draw, name, draw(st.sampled_from([b"for=1.2.3.4", b"1.2.3.4", b"https"]))))
    fields += draw(st.lists(generic_fields(), max_size=4))
    if odd and _chance(draw, 25):
        fields += draw(st.lists(odd_fields(limits), min_size=1, max_size=2))
    if odd and _chance(draw, 5):  # field count at the limit
        count = limits.fields + draw(st.sampled_from([-1, 0, 1])) - len(fields)
        fields += [Field(b"X-%d: v" % i, b"x-%d" % i, b"v") for i in range(max(0, count))]
    if _chance(draw, 50):
        fields = draw(st.permutations(fields))

    eols = [_eol(draw, odd) for _ in range(len(fields) + 2)]
    head = line + eols[0] + b"".join(f.raw + eol for f, eol in zip(fields, eols[1:])) + eols[-1]
    return Request(head, body, method, target, version, fields, body_expect, framing)


@st.composite
def chunked_bodies(draw: Callable[..., Any], limits: Limits, odd: bool) -> tuple[bytes, bytes]:
    """(raw chunked body, decoded data) ; the raw body is invalid if odd parts were drawn."""
    out = []
    data_all = b""
    for data in draw(st.lists(_bytes(b"abcxyz0\r\n", 1, 20), max_size=4)):
        size = b"%x" % len(data)
        if _chance(draw, 20):
            size = size.upper()
        if _chance(draw, 10):
            size = b"0" * draw(st.integers(1, 20)) + size
        if odd and _chance(draw, 8):
            size = draw(st.one_of(
                st.sampled_from([b"zz", b"-1", b"0x5", b" 3", b"3 ", b"", b"10000000000000000",
                                 b"fffffffffffffffff", b"+3", b"3\t", b"g"]),
                _bytes(b"0123abcdefABxX+- \t;", 1, 6),
            ))
        ext = b""
        if _chance(draw, 15):
            ext = draw(st.sampled_from([b";name=value", b";a;b=c", b';q="x \\" y"', b";a=", b";=v", b";a=b;c"]))
        if odd and _chance(draw, 8):
            ext = draw(st.one_of(
                st.sampled_from([b" ;a=b", b";a b", b';a="x', b";", b";a=b c", b";\x00", b";a=\"\x01\"", b";a=\xff",
                                 b';a="\xff"', b";;a"]),
                _bytes(b';=a"\\ \t\x80\x7f,', 1, 7),  # the extension grammar, generatively
            ))
        payload = data
        if odd and _chance(draw, 6):
            payload = data + draw(st.sampled_from([b"x", b"xyz", b""]))[: draw(st.integers(0, 3))]
            if _chance(draw, 50):
                payload = data[:-1]
        out.append(size + ext + _crlf(draw, odd) + payload + _crlf(draw, odd))
        data_all += data
    last = b"0" * draw(st.integers(1, 3)) if _chance(draw, 10) else b"0"
    if _chance(draw, 10):
        last += draw(st.sampled_from([b";end", b";a=b"]))
    trailers = b""
    if _chance(draw, 20):
        names = draw(st.lists(st.sampled_from([b"Expires: never", b"X-Sum: 1", b"X-Empty:", b"Server-Timing: a"]),
                              max_size=3))
        trailers = b"".join(n + b"\r\n" for n in names)
    if odd and _chance(draw, 10):
        if _chance(draw, 30):  # any short line over the bytes that matter to the field grammar
            trailers += draw(_bytes(b"aZ0-:;= \t\x80\x7f\x00(/\r", 0, 8)) + b"\r\n"
        else:
            trailers += draw(st.sampled_from([
                b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b" folded\r\n", b"X : a\r\n",
                b"NoColon\r\n", b"X: a\nY: b\r\n", b"X: a\x00\r\n", b"Host: a\r\n",
                b"".join(b"T-%d: v\r\n" % i for i in range(limits.fields + 1)),
                b"T: " + b"v" * limits.field_size + b"\r\n",
            ]))
    raw = b"".join(out) + last + _crlf(draw, odd) + trailers + _crlf(draw, odd)
    return raw, data_all


def _crlf(draw: Callable[..., Any], odd: bool) -> bytes:
    if odd and _chance(draw, 4):
        return bytes(draw(st.sampled_from([b"\n", b"\r", b"", b"\r\r\n", b"\n\r\n", b"x\r\n"])))
    return b"\r\n"


@dataclass
class Request:
    head: bytes
    body: bytes
    method: bytes
    target: bytes
    version: bytes
    fields: list[Field]
    body_expect: bytes
    framing: str

    @property
    def raw(self) -> bytes:
        return self.head + self.body


# -- streams -------------------------------------------------------------------------------

@dataclass
class Stream:
    raw: bytes
    config: dict[str, int]
    # For streams valid by construction: per request (its raw bytes, its expected head event, body).
    model: Optional[list[tuple[bytes, tuple[Any, ...], bytes]]] = field(default=None)

    def expected(self, upgrades: bool) -> list[tuple[Any, ...]]:
        """The normalized events every backend must produce (valid streams only)."""
        assert self.model is not None
        out: list[tuple[Any, ...]] = []
        pos = self.raw.find(self.model[0][0]) if self.model else 0
        for raw, head, body in self.model:
            pos = self.raw.index(raw, pos)
            out.append(head)
            if head[-1] and upgrades:  # a WebSocket request: the rest is handed over
                out.append(("upgrade", self.raw[pos + raw.index(b"\r\n\r\n") + 4:]))
                return out
            if body:
                out.append(("body", body))
            out.append(("end",))
            pos += len(raw)
        return out


def expected_head(req: Request) -> tuple[Any, ...]:
    """The head event of a valid request, computed from what was generated (not by asgiserve)."""
    headers = [(f.name, f.value) for f in req.fields]
    names = [n for n, _ in headers]
    connection_values = [v for n, v in headers if n == b"connection"]
    upgrade_values = [v for n, v in headers if n == b"upgrade"]
    connection = b", ".join(connection_values) if connection_values else None
    framing = -1 if b"transfer-encoding" in names else (
        int(dict(headers)[b"content-length"]) if b"content-length" in names else 0)

    def tokens(values: list[bytes]) -> set[bytes]:
        return {t.strip(b" \t").lower() for v in values for t in v.split(b",")}

    upgrade = b"websocket" in tokens(upgrade_values) and b"upgrade" in tokens(connection_values)
    return ("head", req.method, req.target, req.version[5:].decode(), headers, framing, connection,
            any(n == b"expect" and v.lower() == b"100-continue" for n, v in headers),
            any(n in (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto") for n in names), upgrade)


@st.composite
def streams(draw: Callable[..., Any], max_requests: int = 4, mutate: bool = True) -> Stream:
    """A connection's worth of bytes: pipelined requests, odd parts, mutations."""
    config = draw(st.sampled_from(CONFIGS))
    limits = Limits.of(config)
    odd = _chance(draw, 65)
    reqs: list[bytes] = []
    for _ in range(draw(st.integers(1, max_requests))):
        if reqs and _chance(draw, 15):
            reqs.append(reqs[-1])  # byte-identical heads: the h11 adapter reuses its verdict
            continue
        req = draw(requests(limits, odd and _chance(draw, 50)))
        reqs.append(req.raw)
    seps = [draw(st.sampled_from([b"", b"", b"", b"\r\n", b"\r\n\r\n", b"\n"])) if odd else b"" for _ in reqs]
    raw = b"".join(sep + r for sep, r in zip(seps, reqs))
    if odd and _chance(draw, 10):  # a partial request at the end (EOF mid-request)
        raw += draw(st.sampled_from([b"G", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n",
                                     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", b"\r"]))
    if odd and _chance(draw, 5):  # garbage after the requests
        raw += draw(st.sampled_from([b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                                     b"\x00", b"\xff" * 10]))
    if mutate and raw and _chance(draw, 35):
        raw = draw(mutations(raw))
    return Stream(raw, config)


@st.composite
def mutations(draw: Callable[..., Any], raw: bytes) -> bytes:
    """Byte flips, insertions, deletions, truncation and duplication of a stream."""
    for _ in range(draw(st.integers(1, 3))):
        if not raw:
            break
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]))
        at = draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw = raw[:at] + bytes([raw[at] ^ (1 << draw(st.integers(0, 7)))]) + raw[at + 1:]
        elif op == "set":
            raw = raw[:at] + bytes([draw(st.sampled_from(ODD_BYTES))]) + raw[at + 1:]
        elif op == "insert":
            piece = draw(st.one_of(st.sampled_from([b"\r\n", b"\n", b"\r", b" ", b"\x00", b"\r\n\r\n", b":", b"0",
                                                    b"\r\n \r\n", b"Host: b\r\n", b"Content-Length: 1\r\n",
                                                    b"Transfer-Encoding: chunked\r\n"]),
                                   st.binary(min_size=1, max_size=4)))
            raw = raw[:at] + piece + raw[at:]
        elif op == "delete":
            raw = raw[:at] + raw[at + draw(st.integers(1, 4)):]
        elif op == "truncate":
            raw = raw[:at]
        else:
            end = min(len(raw), at + draw(st.integers(1, 40)))
            raw = raw[:end] + raw[at:end] + raw[end:]
    return raw


@st.composite
def valid_streams(draw: Callable[..., Any]) -> Stream:
    """Pipelined requests valid by construction, with the exact events expected (default limits)."""
    limits = Limits()
    model = []
    raws = []
    for _ in range(draw(st.integers(1, 4))):
        req = draw(requests(limits, odd=False))
        model.append((req.raw, expected_head(req), req.body_expect))
        raws.append(draw(st.sampled_from([b"", b"", b"\r\n", b"\r\n\r\n"])) + req.raw)
    raw = b"".join(raws)
    if _chance(draw, 20):
        raw += b"\r\n"  # an empty line between requests, at the end: not a request
    return Stream(raw, {}, model)


def _masked(opcode: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@st.composite
def websocket_streams(draw: Callable[..., Any]) -> Stream:
    """0-2 plain requests, a WebSocket handshake (usually valid), then frames or other bytes."""
    limits = Limits()
    raw = b"".join(draw(requests(limits, odd=False)).raw for _ in range(draw(st.integers(0, 2))))
    method = b"GET" if _chance(draw, 90) else draw(st.sampled_from([b"POST", b"HEAD", b"OPTIONS"]))
    version = b"HTTP/1.1" if _chance(draw, 90) else b"HTTP/1.0"
    fields = [b"Host: a", b"Upgrade: " + draw(st.sampled_from([b"websocket", b"WebSocket", b"h2c, websocket"])),
              b"Connection: " + draw(st.sampled_from([b"Upgrade", b"keep-alive, Upgrade", b"upgrade"]))]
    if _chance(draw, 95):
        fields.append(b"Sec-WebSocket-Key: " + (WS_KEY if _chance(draw, 90) else b"c2hvcnQ="))
    if _chance(draw, 95):
        fields.append(b"Sec-WebSocket-Version: " + (b"13" if _chance(draw, 90) else b"8"))
    if _chance(draw, 20):
        fields.append(b"Sec-WebSocket-Protocol: chat, superchat")
    if _chance(draw, 10):
        fields.append(b"Content-Length: 3")
    fields = draw(st.permutations(fields))
    raw += method + b" /ws?x=1 " + version + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"
    tail = draw(st.lists(st.sampled_from([
        _masked(1, b"hello"), _masked(2, b"\x00\xff"), _masked(9, b"p"), _masked(8, b"\x03\xe8"),
        _masked(1, b"\xff"), b"\x81\x05hello", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"\x00", b"abc",
    ]), max_size=3))
    return Stream(raw + b"".join(tail), {})


@st.composite
def mixed_streams(draw: Callable[..., Any], max_requests: int = 4) -> Stream:
    """``streams`` most of the time, ``websocket_streams`` (a handshake and frames) otherwise."""
    return draw(streams(max_requests) if _chance(draw, 85) else websocket_streams())


@st.composite
def splits(draw: Callable[..., Any], length: int) -> list[int]:
    """Cut points in a stream of ``length`` bytes: whole, byte by byte, a few or many random cuts."""
    if length < 2:
        return []
    mode = draw(st.sampled_from(["random", "random", "random", "whole", "bytes", "pairs"]))
    if mode == "whole":
        return []
    if mode == "bytes" and length <= 3000:
        return list(range(1, length))
    if mode == "pairs" and length <= 6000:
        return list(range(2, length, 2))
    cuts = draw(st.lists(st.integers(1, length - 1), max_size=24))
    return sorted(set(cuts))


def pieces(raw: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0] + sorted(set(c for c in cuts if 0 < c < len(raw))) + [len(raw)]
    return [raw[a:b] for a, b in zip(bounds, bounds[1:])] if raw else []
