#!/usr/bin/env python3
"""Guardrail parity: the same hook configs through Portkey's open-source gateway and ours.

Starts a fake OpenAI upstream (stdlib http.server), Portkey's gateway
(`@portkey-ai/gateway`, installed with npm under $PORTKEY_PREFIX, default /tmp/portkey)
and `target/release/portcullis`, each on a free loopback port; sends every scenario to
both (non-stream chat completions) and compares the HTTP status, each hook's verdict and
each check's id and verdict in `hook_results`. Prints a table (`--markdown` for the one in
crates/guard/PARITY.md) and exits 1 when a mismatch is not listed as a deliberate
difference (a reference to /work/shared/reference/portkey-guardrails.md).

Not run by CI. Needs node (>= 18) and npm registry access for the first install:

    python3 scripts/portkey_parity.py [--markdown] [--only NAME_SUBSTRING] [-v]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORTKEY_VERSION = "1.15.2"
PORTKEY_PREFIX = Path(os.environ.get("PORTKEY_PREFIX", "/tmp/portkey"))
PORTKEY_JS = Path(os.environ.get("PORTKEY_JS", PORTKEY_PREFIX / "node_modules/@portkey-ai/gateway/build/start-server.js"))
PORTCULLIS = Path(os.environ.get("PORTCULLIS_BIN", ROOT / "target/release/portcullis"))
REF = "portkey-guardrails.md"

# --------------------------------------------------------------------------- upstream


class Upstream:
    """An OpenAI-compatible fake: every chat completion answers `self.answer` (None = null)."""

    def __init__(self) -> None:
        self.answer: str | None = "Hello."
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    req = json.loads(raw or b"{}")
                except ValueError:
                    req = {}
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                outer.hits += 1
                self._send(
                    200,
                    {
                        "id": "chatcmpl-parity",
                        "object": "chat.completion",
                        "created": 1700000000,
                        "model": req.get("model", "m"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": outer.answer},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
                    },
                )

            def _send(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- gateways


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port} within {timeout}s")


def ensure_portkey() -> None:
    if PORTKEY_JS.exists():
        return
    npm = shutil.which("npm")
    if not npm:
        raise SystemExit("npm not found: install node, or set PORTKEY_PREFIX to an install")
    print(f"installing @portkey-ai/gateway@{PORTKEY_VERSION} into {PORTKEY_PREFIX}", file=sys.stderr)
    subprocess.run(
        [npm, "install", "--prefix", str(PORTKEY_PREFIX), f"@portkey-ai/gateway@{PORTKEY_VERSION}"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def installed_portkey_version() -> str:
    pkg = PORTKEY_JS.parent.parent / "package.json"
    return json.loads(pkg.read_text())["version"]


# Portkey 1.15.2 on Node answers 500 ("TypeError: immutable") wherever it should answer 246:
# its after-hook handler builds `new Response(json, {status: 246, headers: upstream.headers})`,
# @hono/node-server's lightweight Response keeps that (immutable, fetch-owned) Headers object by
# reference, and `updateHeaders` then appends to it. Reading `statusText` first makes the
# lightweight Response build a real one with its own headers. One token, applied to a copy
# next to the original (so imports resolve); `--no-patch` runs the original.
PATCH_FROM = "updateHeaders(e,t,a){return e.headers.append("
PATCH_TO = "updateHeaders(e,t,a){return void e.statusText,e.headers.append("


def portkey_entry(patch: bool) -> Path:
    if not patch:
        return PORTKEY_JS
    src = PORTKEY_JS.read_text()
    if src.count(PATCH_FROM) != 1:
        raise SystemExit(f"cannot apply the 246 patch to {PORTKEY_JS} (not version {PORTKEY_VERSION}?)")
    out = PORTKEY_JS.with_name("start-server.parity.js")
    out.write_text(src.replace(PATCH_FROM, PATCH_TO))
    return out


def start_portkey(log, patch: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        ["node", str(portkey_entry(patch)), f"--port={port}", "--headless"],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NODE_ENV": "production"},
    )
    wait_port(port, proc, "portkey gateway")
    return proc, port


def start_ours(upstream_port: int, tmp: Path, log) -> tuple[subprocess.Popen, int]:
    if not PORTCULLIS.exists():
        raise SystemExit(
            f"{PORTCULLIS} missing: CARGO_INCREMENTAL=0 cargo build --release -p portcullis-gateway"
        )
    port = free_port()
    cfg = tmp / "portcullis.json"
    cfg.write_text(
        json.dumps(
            {
                "providers": {
                    "up": {
                        "provider": "openai",
                        "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                        "api_key": "x",
                    }
                }
            }
        )
    )
    proc = subprocess.Popen(
        [str(PORTCULLIS), "--config", str(cfg), "--listen", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    wait_port(port, proc, "portcullis")
    return proc, port


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post(port: int, config: dict, body: dict, metadata: dict | None) -> tuple[int, dict | str]:
    headers = {"content-type": "application/json", "x-portkey-config": json.dumps(config)}
    if metadata is not None:
        headers["x-portkey-metadata"] = json.dumps(metadata)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            status, raw = res.status, res.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


# --------------------------------------------------------------------------- scenarios


def hook(hid: str, checks: list, deny: bool = False, **extra) -> dict:
    """A full hook: checks are (id, parameters) or (id, parameters, is_enabled)."""
    out = []
    for c in checks:
        check = {"id": c[0] if "." in c[0] else f"default.{c[0]}", "parameters": c[1]}
        if len(c) > 2:
            check["is_enabled"] = c[2]
        out.append(check)
    return {"id": hid, "type": "guardrail", "deny": deny, "checks": out, **extra}


def before(*hooks) -> dict:
    return {"before_request_hooks": list(hooks)}


def after(*hooks) -> dict:
    return {"after_request_hooks": list(hooks)}


def sc(name, hooks, text="hello world", answer="Hello.", model="gpt-4o-mini", metadata=None, deliberate=None):
    return {
        "name": name,
        "hooks": hooks,
        "text": text,
        "answer": answer,
        "model": model,
        "metadata": metadata,
        "deliberate": deliberate,
    }


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}

SCENARIOS = [
    # ---- regexMatch
    sc("in regexMatch pass deny", before(hook("h", [("regexMatch", {"rule": "\\bworld\\b"})], deny=True))),
    sc("in regexMatch fail deny", before(hook("h", [("regexMatch", {"rule": "^bye"})], deny=True))),
    sc("in regexMatch fail no-deny", before(hook("h", [("regexMatch", {"rule": "^bye"})]))),
    sc("in regexMatch not (matches -> fail)", before(hook("h", [("regexMatch", {"rule": "hello", "not": True})], deny=True))),
    sc("in regexMatch lookahead+backref", before(hook("h", [("regexMatch", {"rule": "^(?=.*world)(\\w)\\w*l\\1?"})], deny=True))),
    sc("in regexMatch /i literal is not a flag", before(hook("h", [("regexMatch", {"rule": "/HELLO/i"})]))),
    sc("in regexMatch last message only", before(hook("h", [("regexMatch", {"rule": "secret"})])), text=["secret in first", "plain last"]),
    sc("out regexMatch pass", after(hook("h", [("regexMatch", {"rule": "Hel+o"})], deny=True)), answer="Hello there."),
    sc("out regexMatch not fail deny", after(hook("h", [("regexMatch", {"rule": "secret", "not": True})], deny=True)), answer="the secret is 42"),
    # ---- sentenceCount
    sc("in sentenceCount pass", before(hook("h", [("sentenceCount", {"minSentences": 2, "maxSentences": 3})])), text="Hi. There! Ok?"),
    sc("in sentenceCount fail", before(hook("h", [("sentenceCount", {"minSentences": 2, "maxSentences": 3})], deny=True)), text="Hi there"),
    sc("out sentenceCount ellipsis = 3", after(hook("h", [("sentenceCount", {"minSentences": 3, "maxSentences": 3})])), answer="Well..."),
    sc("out sentenceCount not", after(hook("h", [("sentenceCount", {"minSentences": 1, "maxSentences": 1, "not": True})])), answer="One."),
    # ---- wordCount
    sc("in wordCount pass", before(hook("h", [("wordCount", {"minWords": 1, "maxWords": 3})], deny=True)), text="  two words  "),
    sc("in wordCount fail deny", before(hook("h", [("wordCount", {"minWords": 1, "maxWords": 3})], deny=True)), text="one two three four"),
    sc("out wordCount fail deny (446 after call)", after(hook("h", [("wordCount", {"minWords": 5, "maxWords": 100})], deny=True)), answer="Too short."),
    sc("out wordCount not", after(hook("h", [("wordCount", {"minWords": 5, "maxWords": 100, "not": True})])), answer="Too short."),
    sc(
        "in wordCount missing bounds",
        before(hook("h", [("wordCount", {})], deny=True)),
        deliberate=f"{REF} line 84 (§3): **better**: apply the manifest defaults (0 / 99999); Portkey errors and the error passes",
    ),
    # ---- characterCount
    sc("in characterCount UTF-16 pass", before(hook("h", [("characterCount", {"minCharacters": 4, "maxCharacters": 4})])), text="a😀b"),
    sc("out characterCount fail deny", after(hook("h", [("characterCount", {"minCharacters": 1, "maxCharacters": 5})], deny=True)), answer="Far too long."),
    # ---- jsonSchema
    sc("out jsonSchema fenced pass", after(hook("h", [("jsonSchema", {"schema": SCHEMA})], deny=True)), answer='Here:\n```json\n{"name": "Ann", "age": 3}\n```'),
    sc("out jsonSchema brace fail", after(hook("h", [("jsonSchema", {"schema": SCHEMA})])), answer='Result {"name": "Ann", "age": -1} done'),
    sc("out jsonSchema no JSON with not", after(hook("h", [("jsonSchema", {"schema": SCHEMA, "not": True})])), answer="no json here"),
    sc("out jsonSchema not (valid -> fail)", after(hook("h", [("jsonSchema", {"schema": SCHEMA, "not": True})], deny=True)), answer='{"name": "Ann", "age": 3}'),
    # ---- jsonKeys
    sc("out jsonKeys all pass", after(hook("h", [("jsonKeys", {"keys": ["a", "b"], "operator": "all"})])), answer='{"a": 1, "b": 2, "c": 3}'),
    sc("out jsonKeys any fail", after(hook("h", [("jsonKeys", {"keys": ["x", "y"], "operator": "any"})], deny=True)), answer='{"a": 1}'),
    sc("out jsonKeys none pass", after(hook("h", [("jsonKeys", {"keys": ["x"], "operator": "none"})])), answer='```json\n{"a": 1}\n```'),
    sc("out jsonKeys no JSON", after(hook("h", [("jsonKeys", {"keys": ["x"], "operator": "none"})])), answer="plain"),
    # ---- contains
    sc("out contains any pass", after(hook("h", [("contains", {"words": ["cat", "dog"], "operator": "any"})])), answer="a dog barks"),
    sc("out contains all fail", after(hook("h", [("contains", {"words": ["cat", "dog"], "operator": "all"})])), answer="a dog barks"),
    sc("out contains none fail deny", after(hook("h", [("contains", {"words": ["Dog"], "operator": "none"})], deny=True)), answer="Dog days"),
    sc("out contains case-sensitive", after(hook("h", [("contains", {"words": ["DOG"], "operator": "any"})])), answer="a dog barks"),
    sc("in contains none (before hook)", before(hook("h", [("contains", {"words": ["forbidden"], "operator": "none"})], deny=True)), text="a forbidden word"),
    # ---- validUrls (no network: only URL-less or malformed text)
    sc("out validUrls no URL", after(hook("h", [("validUrls", {})])), answer="no links here"),
    sc("out validUrls no URL with not", after(hook("h", [("validUrls", {"not": True})])), answer="no links here"),
    sc("out validUrls malformed", after(hook("h", [("validUrls", {"onlyDNS": True})])), answer="see http://exa%mple..com/ now"),
    # ---- containsCode
    sc("out containsCode python pass", after(hook("h", [("containsCode", {"format": "Python"})])), answer="```py\nprint(1)\n```"),
    sc("out containsCode wrong lang fail", after(hook("h", [("containsCode", {"format": "SQL"})], deny=True)), answer="```rs\nfn main() {}\n```"),
    sc("out containsCode no fence", after(hook("h", [("containsCode", {"format": "Python"})])), answer="print(1)"),
    sc("out containsCode no fence not", after(hook("h", [("containsCode", {"format": "Python", "not": True})])), answer="print(1)"),
    # ---- case checks
    sc("in alluppercase pass", before(hook("h", [("alluppercase", {})])), text="HELLO, WORLD 42!"),
    sc("in alluppercase fail deny", before(hook("h", [("alluppercase", {})], deny=True)), text="HELLO world"),
    sc("out alllowercase pass", after(hook("h", [("alllowercase", {})])), answer="all lower, ok."),
    sc("out alllowercase not", after(hook("h", [("alllowercase", {"not": True})])), answer="all lower"),
    sc("in alluppercase no letters", before(hook("h", [("alluppercase", {})])), text="1234 !!"),
    # ---- endsWith
    sc("in endsWith suffix.", before(hook("h", [("endsWith", {"suffix": "world"})], deny=True)), text="hello world."),
    sc("out endsWith fail", after(hook("h", [("endsWith", {"suffix": "bye"})])), answer="hello"),
    sc("out endsWith not", after(hook("h", [("endsWith", {"suffix": "lo", "not": True})])), answer="hello"),
    # ---- modelWhitelist
    sc("in modelWhitelist pass", before(hook("h", [("modelWhitelist", {"models": ["gpt-4o-mini"]})], deny=True))),
    sc("in modelWhitelist fail deny", before(hook("h", [("modelWhitelist", {"models": ["gpt-4o"]})], deny=True))),
    sc("in modelWhitelist not", before(hook("h", [("modelWhitelist", {"models": ["gpt-4o-mini"], "not": True})]))),
    sc(
        "in modelwhitelist (manifest id)",
        before(hook("h", [("modelwhitelist", {"models": ["gpt-4o-mini"]})], deny=True)),
        deliberate=f"{REF} line 103: manifest id `modelwhitelist` and dispatch key `modelWhitelist`: accept both (Portkey knows only the dispatch key: unknown check, errors, passes)",
    ),
    # ---- requiredMetadataKeys
    sc("in requiredMetadataKeys all pass", before(hook("h", [("requiredMetadataKeys", {"metadataKeys": ["team", "env"], "operator": "all"})], deny=True)), metadata={"team": "a", "env": "dev"}),
    sc("in requiredMetadataKeys all fail", before(hook("h", [("requiredMetadataKeys", {"metadataKeys": ["team", "env"], "operator": "all"})], deny=True)), metadata={"team": "a"}),
    sc("in requiredMetadataKeys any no metadata", before(hook("h", [("requiredMetadataKeys", {"metadataKeys": ["team"], "operator": "any"})]))),
    sc("in requiredMetadataKeys none fail", before(hook("h", [("requiredMetadataKeys", {"metadataKeys": ["team"], "operator": "none"})])), metadata={"team": "a"}),
    # ---- allowedRequestTypes
    sc("in allowedRequestTypes allowed", before(hook("h", [("allowedRequestTypes", {"allowedTypes": ["chatComplete", "embed"]})], deny=True))),
    sc("in allowedRequestTypes blocked (comma list)", before(hook("h", [("allowedRequestTypes", {"blockedTypes": "embed,chatComplete"})], deny=True))),
    sc("in allowedRequestTypes not allowed", before(hook("h", [("allowedRequestTypes", {"allowedTypes": ["embed"]})]))),
    sc("in allowedRequestTypes from metadata", before(hook("h", [("allowedRequestTypes", {})])), metadata={"blocked_endpoints": "chatComplete"}),
    # ---- notNull
    sc("out notNull pass", after(hook("h", [("notNull", {})], deny=True)), answer="x"),
    sc("out notNull blank fail", after(hook("h", [("notNull", {})], deny=True)), answer="   "),
    sc("out notNull null not", after(hook("h", [("notNull", {"not": True})])), answer=None),
    # ---- errors, failOnError, is_enabled, several hooks and checks
    sc("in regexMatch empty text errors (passes)", before(hook("h", [("regexMatch", {"rule": "x"})], deny=True)), text=""),
    sc("in regexMatch empty text failOnError", before(hook("h", [("regexMatch", {"rule": "x", "failOnError": True})], deny=True)), text=""),
    sc("in is_enabled false skipped", before(hook("h", [("regexMatch", {"rule": "^bye"}, False), ("wordCount", {"minWords": 1, "maxWords": 9})], deny=True))),
    sc(
        "in two checks, one fails",
        before(hook("h", [("regexMatch", {"rule": "hello"}), ("wordCount", {"minWords": 5, "maxWords": 9})], deny=True)),
    ),
    sc(
        "in+out: before passes, after fails no-deny",
        {
            **before(hook("b", [("modelWhitelist", {"models": ["gpt-4o-mini"]})], deny=True)),
            **after(hook("a", [("contains", {"words": ["sorry"], "operator": "none"})])),
        },
        answer="sorry, no",
    ),
    sc(
        "in+out: before fails no-deny, after passes",
        {
            **before(hook("b", [("modelWhitelist", {"models": ["other"]})])),
            **after(hook("a", [("notNull", {})], deny=True)),
        },
    ),
    sc(
        "in+out: before fails no-deny, after fails deny",
        {
            **before(hook("b", [("modelWhitelist", {"models": ["other"]})])),
            **after(hook("a", [("endsWith", {"suffix": "zzz"})], deny=True)),
        },
    ),
    sc(
        "out two hooks: deny one passes, other fails",
        after(
            hook("a1", [("notNull", {})], deny=True),
            hook("a2", [("endsWith", {"suffix": "?"})]),
        ),
        answer="Fine.",
    ),
    sc(
        "shorthand input_guardrails deny",
        {"input_guardrails": [{"deny": True, "wordCount": {"minWords": 1, "maxWords": 1}}]},
        text="two words",
    ),
    sc(
        "shorthand output_guardrails no-deny",
        {"output_guardrails": [{"contains": {"words": ["Hello"], "operator": "none"}, "endsWith": {"suffix": "Hello"}}]},
        answer="Hello.",
    ),
]


# --------------------------------------------------------------------------- comparison


def summarize(status: int, body) -> dict:
    """What we compare: status, and per phase the hooks' verdicts and their checks."""
    out = {"status": status, "before": None, "after": None}
    if not isinstance(body, dict):
        out["body"] = str(body)[:200]
        return out
    hr = body.get("hook_results")
    if isinstance(body.get("error"), dict) and status not in (446,):
        out["error"] = str(body["error"].get("message", ""))[:200]
    if not isinstance(hr, dict):
        return out
    for phase, key in (("before", "before_request_hooks"), ("after", "after_request_hooks")):
        hooks = hr.get(key) or []
        out[phase] = [
            {
                "verdict": h.get("verdict"),
                "checks": [
                    (c.get("id"), c.get("verdict"), bool(c.get("error"))) for c in (h.get("checks") or [])
                ],
            }
            for h in hooks
        ]
    return out


def comparable(s: dict) -> dict:
    # Check errors are shown, not compared: ours rejects some at load and words them differently.
    c = {"status": s["status"]}
    for phase in ("before", "after"):
        c[phase] = [
            {"verdict": h["verdict"], "checks": [(i, v) for i, v, _ in h["checks"]]} for h in (s[phase] or [])
        ]
    return c


def render(s: dict) -> str:
    parts = [str(s["status"])]
    for phase in ("before", "after"):
        for h in s[phase] or []:
            checks = ",".join(
                f"{(i or '?').removeprefix('default.')}={'T' if v else 'F'}{'!' if e else ''}" for i, v, e in h["checks"]
            )
            parts.append(f"{phase[0]}:{'T' if h['verdict'] else 'F'}[{checks}]")
    if "error" in s:
        parts.append(f"err: {s['error'][:60]}")
    if "body" in s:
        parts.append(f"body: {s['body'][:60]}")
    return " ".join(parts)


def request_body(s: dict) -> dict:
    texts = s["text"] if isinstance(s["text"], list) else [s["text"]]
    messages = []
    for i, t in enumerate(texts):
        role = "user" if i % 2 == 0 or i == len(texts) - 1 else "assistant"
        messages.append({"role": role, "content": t})
    return {"model": s["model"], "messages": messages}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown", action="store_true", help="print the PARITY.md table")
    ap.add_argument("--only", help="run scenarios whose name contains this")
    ap.add_argument("--no-patch", action="store_true", help="run Portkey unpatched (246 becomes 500 on Node)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print both raw hook_results")
    args = ap.parse_args()

    ensure_portkey()
    version = installed_portkey_version()
    scenarios = [s for s in SCENARIOS if not args.only or args.only in s["name"]]

    upstream = Upstream()
    tmp = Path(tempfile.mkdtemp(prefix="portkey-parity-"))
    pk_log = open(tmp / "portkey.log", "wb")
    our_log = open(tmp / "portcullis.log", "wb")
    pk = ours = None
    rows = []
    try:
        pk, pk_port = start_portkey(pk_log, not args.no_patch)
        ours, our_port = start_ours(upstream.port, tmp, our_log)
        for s in scenarios:
            upstream.answer = s["answer"]
            body = request_body(s)
            pk_cfg = {"provider": "openai", "custom_host": f"http://127.0.0.1:{upstream.port}/v1", "api_key": "x", **s["hooks"]}
            our_cfg = {"virtual_key": "up", **s["hooks"]}
            h0 = upstream.hits
            p_status, p_body = post(pk_port, pk_cfg, body, s["metadata"])
            h1 = upstream.hits
            o_status, o_body = post(our_port, our_cfg, body, s["metadata"])
            h2 = upstream.hits
            p, o = summarize(p_status, p_body), summarize(o_status, o_body)
            p["calls"], o["calls"] = h1 - h0, h2 - h1
            same = comparable(p) == comparable(o) and p["calls"] == o["calls"]
            kind = "match" if same else ("deliberate" if s["deliberate"] else "MISMATCH")
            rows.append((s, p, o, kind))
            if args.verbose:
                print(f"== {s['name']}\n  portkey {p_status}: {json.dumps(p_body)[:1500]}\n  ours    {o_status}: {json.dumps(o_body)[:1500]}")
    finally:
        stop(ours)
        stop(pk)
        upstream.stop()
        pk_log.close()
        our_log.close()

    if args.markdown:
        print(f"Portkey `@portkey-ai/gateway` {version}; Portcullis `{PORTCULLIS}`; node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}.\n")
        print("Cells: status, then per hook `b:`/`a:` (before/after) verdict `T`/`F` and each check's verdict (`!` = the check reported an error). `calls` = upstream calls.\n")
        print("| # | scenario | Portkey | ours | result |")
        print("|---|---|---|---|---|")
        for n, (s, p, o, kind) in enumerate(rows, 1):
            note = "match" if kind == "match" else ("deliberate: " + s["deliberate"] if kind == "deliberate" else "**MISMATCH**")
            print(f"| {n} | {s['name']} | `{render(p)}` calls={p['calls']} | `{render(o)}` calls={o['calls']} | {note} |")
    else:
        w = max(len(s["name"]) for s, *_ in rows)
        for s, p, o, kind in rows:
            print(f"{kind:10} {s['name']:{w}}  portkey: {render(p)} calls={p['calls']}  |  ours: {render(o)} calls={o['calls']}")
    if any("not supported yet" in o.get("error", "") for _, _, o, _ in rows):
        print(f"note: {PORTCULLIS} refuses hook sections: it predates the guard crate; rebuild it"
              " (or point PORTCULLIS_BIN at a newer build)", file=sys.stderr)
    counts = {k: sum(1 for *_, kk in rows if kk == k) for k in ("match", "deliberate", "MISMATCH")}
    print(f"\n{len(rows)} scenarios: {counts['match']} match, {counts['deliberate']} deliberate, {counts['MISMATCH']} mismatch", file=sys.stderr)
    return 1 if counts["MISMATCH"] else 0


if __name__ == "__main__":
    sys.exit(main())
