#!/usr/bin/env python3
"""A FHIR R4 server that is not Continuum, for `crates/continuum/tests/foreign_peer.rs`.

Standard library only. It serves one Synthea patient the way a HAPI-style server answers:
numeric ids and `meta.versionId`, `$everything` in pages whose `next` links go through
`?_getpages=…&_getpagesoffset=…` on the base, a SMART backend-services token endpoint that
checks the client assertion's shape and claims (alg ES384, iss = sub = the expected client id,
aud = the token endpoint, a jti; the signature is not verified: the standard library has no
ECDSA), `Patient/$match` answering the patient as a certain match, and 401 without the token.

    python3 foreign_fhir_server.py --bundle SYNTHEA.json --client-id ID [--page-size 40]

It prints one line `listening http://127.0.0.1:PORT/fhir counts {"Type": n, ...}` and serves
until killed.
"""

import argparse
import base64
import json
import sys
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def load(bundle_path):
    bundle = json.load(open(bundle_path))
    ids, resources, next_id = {}, [], 1001
    for entry in bundle["entry"]:
        resource = entry["resource"]
        local = f"{resource['resourceType']}/{next_id}"
        next_id += 1
        if entry.get("fullUrl"):
            ids[entry["fullUrl"]] = local
        resources.append((local, resource))

    def rewrite(node):
        if isinstance(node, dict):
            return {k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else rewrite(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    out = []
    for local, resource in resources:
        resource = rewrite(resource)
        resource["id"] = local.split("/")[1]
        resource["meta"] = {"versionId": "1", "lastUpdated": "2024-01-02T03:04:05.000+00:00"}
        out.append(resource)
    return out


def b64json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--page-size", type=int, default=40)
    args = parser.parse_args()
    resources = load(args.bundle)
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    pages = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def base(self):
            return f"http://127.0.0.1:{self.server.server_address[1]}"

        def send(self, status, body, content_type="application/fhir+json"):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def outcome(self, status, text):
            self.send(status, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing", "diagnostics": text}]})

        def authorized(self):
            if self.headers.get("authorization") != "Bearer fixture-token":
                self.outcome(401, "no valid token")
                return False
            return True

        def page(self, key, offset):
            everything = pages[key]
            size = args.page_size
            chunk = everything[offset:offset + size]
            bundle = {
                "resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": len(everything),
                "link": [{"relation": "self", "url": f"{self.base()}/fhir/Patient/{patient['id']}/$everything"}],
                "entry": [{"fullUrl": f"{self.base()}/fhir/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in chunk],
            }
            if offset + size < len(everything):
                bundle["link"].append({"relation": "next", "url": f"{self.base()}/fhir?_getpages={key}&_getpagesoffset={offset + size}&_count={size}&_bundletype=searchset"})
            self.send(200, bundle)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/fhir/.well-known/smart-configuration":
                return self.send(200, {
                    "token_endpoint": f"{self.base()}/oauth/token",
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    "token_endpoint_auth_signing_alg_values_supported": ["ES384", "RS384"],
                    "capabilities": ["client-confidential-asymmetric"],
                }, "application/json")
            if not self.authorized():
                return
            if url.path == f"/fhir/Patient/{patient['id']}/$everything":
                key = str(uuid.uuid4())
                pages[key] = resources
                return self.page(key, 0)
            if url.path in ("/fhir", "/fhir/") and query.get("_getpages") in pages:
                return self.page(query["_getpages"], int(query.get("_getpagesoffset", "0")))
            self.outcome(404, "not found")

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if url.path == "/oauth/token":
                form = dict(urllib.parse.parse_qsl(body.decode()))
                assertion = form.get("client_assertion", "").split(".")
                ok = (form.get("grant_type") == "client_credentials"
                      and form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                      and len(assertion) == 3)
                if ok:
                    header, claims = b64json(assertion[0]), b64json(assertion[1])
                    ok = (header.get("alg") == "ES384" and claims.get("iss") == args.client_id
                          and claims.get("sub") == args.client_id and claims.get("aud") == f"{self.base()}/oauth/token"
                          and claims.get("jti") and claims.get("exp"))
                if not ok:
                    return self.send(400, {"error": "invalid_client"}, "application/json")
                return self.send(200, {"access_token": "fixture-token", "token_type": "bearer", "expires_in": 300,
                                       "scope": form.get("scope", "system/*.rs")}, "application/json")
            if not self.authorized():
                return
            if url.path == "/fhir/Patient/$match":
                return self.send(200, {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [{
                    "fullUrl": f"{self.base()}/fhir/Patient/{patient['id']}", "resource": patient,
                    "search": {"mode": "match", "score": 0.98, "extension": [
                        {"url": "http://hl7.org/fhir/StructureDefinition/match-grade", "valueCode": "certain"}]}}]})
            self.outcome(404, "not found")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    counts = {}
    for r in resources:
        counts[r["resourceType"]] = counts.get(r["resourceType"], 0) + 1
    print(f"listening http://127.0.0.1:{server.server_address[1]}/fhir counts {json.dumps(counts, sort_keys=True)}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
