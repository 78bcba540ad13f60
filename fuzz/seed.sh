#!/usr/bin/env bash
# Seeds each fuzz target's corpus (fuzz/corpus/TARGET, not committed) from the shared corpus
# (../shared/corpus: official FHIR examples and FHIRPath tests, Synthea bundles, HL7 v2
# messages) and from this repository's testdata/ when the shared corpus is absent.
set -euo pipefail
cd "$(dirname "$0")"
shared=${SHARED_CORPUS:-../../shared/corpus}
[ -d "$shared" ] || shared=../testdata
mkdir -p corpus/{fhir_json,search_query,fhirpath,bundle,hl7v2_parse,mllp_framing,ccda_read}

# FHIR JSON: official examples (small ones: libFuzzer mutates better on small inputs).
find "$shared" ../testdata/fhir-examples -name '*.json' -size -16k 2>/dev/null | head -2000 |
  while read -r f; do cp "$f" "corpus/fhir_json/$(sha1sum "$f" | cut -c1-16)"; done

# Bundles: official example Bundles and two Synthea patients.
find "$shared" ../testdata -name 'Bundle-*.json' -size -64k 2>/dev/null | head -300 |
  while read -r f; do cp "$f" "corpus/bundle/$(sha1sum "$f" | cut -c1-16)"; done
find ../testdata/synthea -name '*.json' -size -400k | head -2 |
  while read -r f; do cp "$f" "corpus/bundle/$(sha1sum "$f" | cut -c1-16)"; done

# FHIRPath: every expression of the official R4 test suite.
if [ -f "$shared/fhirpath/tests-fhir-r4.xml" ]; then
  python3 - "$shared/fhirpath/tests-fhir-r4.xml" corpus/fhirpath <<'PY'
import hashlib, html, pathlib, re, sys
text = pathlib.Path(sys.argv[1]).read_text()
for expr in set(re.findall(r"<expression[^>]*>(.*?)</expression>", text, re.S)):
    data = html.unescape(expr).encode()
    (pathlib.Path(sys.argv[2]) / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)
PY
fi

# Search: query strings of the search test suites, one selector byte (resource type) first.
grep -rhoE '\?[A-Za-z_][^" ]*' ../crates/server/tests/*.rs ../crates/store-behaviour/src/*.rs 2>/dev/null |
  cut -c2- | sort -u | head -1500 | while read -r q; do
    printf '\001%s' "$q" > "corpus/search_query/$(printf '%s' "$q" | sha1sum | cut -c1-16)"
  done

# HL7 v2: every message of the shared corpus; for MLLP, the same messages framed (and a few
# frames back to back), with a chunk-size byte first.
find "$shared/hl7v2" ../crates -name '*.hl7' 2>/dev/null | head -1000 |
  while read -r f; do
    name=$(sha1sum "$f" | cut -c1-16)
    cp "$f" "corpus/hl7v2_parse/$name"
    { printf '\007\013'; cat "$f"; printf '\034\015\013'; cat "$f"; printf '\034\015'; } > "corpus/mllp_framing/$name"
  done
# C-CDA: the HL7 C-CDA R2.1 examples.
find ../testdata/ccda/hl7-c-cda-examples -name '*.xml' 2>/dev/null |
  while read -r f; do cp "$f" "corpus/ccda_read/$(sha1sum "$f" | cut -c1-16)"; done
for target in corpus/*; do echo "$target: $(ls "$target" | wc -l) seeds"; done
