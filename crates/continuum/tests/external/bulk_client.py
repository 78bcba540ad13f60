"""A FHIR Bulk Data 2.0 client written from the specification's steps only
(https://hl7.org/fhir/uv/bulkdata/export.html), with the Python standard library:

  kick-off  GET [base]/[level]$export?... with Accept: application/fhir+json and
            Prefer: respond-async -> 202 Accepted, Content-Location = status URL
  status    GET status URL until 200 (202 carries X-Progress and Retry-After, which is honoured)
  manifest  transactionTime, request, requiresAccessToken, output[] {type, url, count}, error[]
  files     GET each url (with the token when requiresAccessToken), Accept: application/fhir+ndjson
  cancel    DELETE status URL -> 202; the status URL then answers 404

Commands (the answers are printed one per line, `key=value` words, for the Rust test to read):
  export BASE TOKEN PATH OUT   run an export, write every resource line to OUT (a file)
  cancel BASE TOKEN PATH       kick off, cancel, check the status is gone
  refused BASE TOKEN PATH      kick off expecting a 4xx OperationOutcome
"""

import json
import sys
import time
import urllib.error
import urllib.request


def request(method, url, token, accept, prefer=None):
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = "Bearer " + token
    if prefer:
        headers["Prefer"] = prefer
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def header(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def kick_off(base, token, path):
    status, headers, body = request("GET", base + "/" + path, token, "application/fhir+json", "respond-async")
    if status != 202:
        raise SystemExit("kick-off answered %d: %s" % (status, body[:500]))
    location = header(headers, "Content-Location")
    if not location:
        raise SystemExit("kick-off without Content-Location")
    return location


def poll(location, token):
    polls = 0
    while True:
        status, headers, body = request("GET", location, token, "application/json")
        polls += 1
        if status == 202:
            progress = header(headers, "X-Progress")
            retry = header(headers, "Retry-After")
            if retry is None:
                raise SystemExit("202 without Retry-After")
            # Honour Retry-After (seconds), but poll at least every second for the test's sake.
            time.sleep(min(float(retry), 1.0) / 4)
            continue
        if status != 200:
            raise SystemExit("status answered %d: %s" % (status, body[:500]))
        content_type = header(headers, "Content-Type") or ""
        if not content_type.startswith("application/json"):
            raise SystemExit("manifest Content-Type is " + content_type)
        return json.loads(body), polls


def export(base, token, path, out):
    location = kick_off(base, token, path)
    manifest, polls = poll(location, token)
    for key in ("transactionTime", "request", "requiresAccessToken", "output", "error"):
        if key not in manifest:
            raise SystemExit("the manifest lacks " + key)
    print("manifest transactionTime=%s requiresAccessToken=%s files=%d errors=%d polls=%d" % (
        manifest["transactionTime"], manifest["requiresAccessToken"], len(manifest["output"]),
        len(manifest["error"]), polls))
    totals = {}
    with open(out, "w") as sink:
        for item in manifest["output"]:
            file_token = token if manifest["requiresAccessToken"] else None
            status, headers, body = request("GET", item["url"], file_token, "application/fhir+ndjson")
            if status != 200:
                raise SystemExit("file answered %d" % status)
            lines = [line for line in body.decode("utf-8").split("\n") if line.strip()]
            for line in lines:
                resource = json.loads(line)
                if resource["resourceType"] != item["type"]:
                    raise SystemExit("a %s in a %s file" % (resource["resourceType"], item["type"]))
                sink.write(line + "\n")
            if "count" in item and item["count"] != len(lines):
                raise SystemExit("count %d but %d lines" % (item["count"], len(lines)))
            totals[item["type"]] = totals.get(item["type"], 0) + len(lines)
            # Without the token, the file is refused.
            status, _, _ = request("GET", item["url"], None, "application/fhir+ndjson")
            if status not in (401, 403):
                raise SystemExit("a file answered %d without the token" % status)
    for resource_type in sorted(totals):
        print("type %s count=%d" % (resource_type, totals[resource_type]))
    # Done with the files: the client deletes them (the spec's last, optional step).
    status, _, _ = request("DELETE", location, token, "application/json")
    print("deleted status=%d" % status)


def cancel(base, token, path):
    location = kick_off(base, token, path)
    status, _, _ = request("DELETE", location, token, "application/json")
    print("cancel status=%d" % status)
    status, _, body = request("GET", location, token, "application/json")
    print("after status=%d" % status)


def refused(base, token, path):
    status, headers, body = request("GET", base + "/" + path, token, "application/fhir+json", "respond-async")
    outcome = json.loads(body) if body else {}
    print("refused status=%d resourceType=%s" % (status, outcome.get("resourceType")))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "export":
        export(*sys.argv[2:6])
    elif command == "cancel":
        cancel(*sys.argv[2:5])
    elif command == "refused":
        refused(*sys.argv[2:5])
    else:
        raise SystemExit("unknown command " + command)
