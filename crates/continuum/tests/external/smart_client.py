"""Real external SMART on FHIR clients for Continuum, written with requests-oauthlib, requests
and PyJWT (https://pypi.org/project/requests-oauthlib/, /requests/, /PyJWT/), not with our code.

    smart_client.py keygen DIR
        A backend service makes its key pairs: an RSA key (RS384) and a P-384 key (ES384) in
        DIR/rs384.pem and DIR/es384.pem, and their public JWK Set in DIR/jwks.json, the file
        the administrator registers with `continuum client add --jwks`.

    smart_client.py standalone FHIR_BASE CLIENT_ID REDIRECT_URI USERNAME PASSWORD NEW_PASSWORD
        A public app's standalone launch with PKCE S256 (SMART App Launch 2.x): discovery,
        the authorization request, a browser on the server's own sign-in, password-change and
        consent forms (whatever hidden fields they carry), the redirect to REDIRECT_URI caught
        without following it (nothing listens there), the code exchange with the verifier, the
        id_token checked against the server's JWK Set, the patient's data read with the bearer
        token, one refresh, then revocation.

    smart_client.py backend FHIR_BASE CLIENT_ID KEY_DIR PATIENT_ID
        A backend service (SMART Backend Services): for each of its keys, a signed client
        assertion (private_key_jwt), grant_type=client_credentials with system scopes, and
        reads with the token; a replayed assertion must be refused.

    smart_client.py service-token FHIR_BASE CLIENT_ID KEY_DIR SCOPES
        A backend service's access token with SCOPES (client_credentials, ES384 assertion),
        printed for another test's client (the Bulk Data client) to use.

Every step prints one line `STEP WORD…` (values as `key=value`) that the Rust test checks; any
deviation exits non-zero with the reason on standard error.
"""

import base64
import hashlib
import json
import os
import sys
import time
import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlparse

import cryptography
import jwt
import oauthlib
import requests
import requests_oauthlib
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

FHIR_JSON = "application/fhir+json"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
STANDALONE_SCOPES = ["launch/patient", "openid", "fhirUser", "patient/*.read", "offline_access"]
BACKEND_SCOPES = "system/Patient.rs system/Observation.rs"
TIMEOUT = 30


def fail(message):
    print(f"smart_client: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def say(*words):
    print(*words, flush=True)


def expect(condition, message):
    if not condition:
        fail(message)


def allow_loopback_http(base):
    """oauthlib refuses plain http; the test server listens on the loopback address only."""
    if urlparse(base).scheme == "http" and urlparse(base).hostname in ("127.0.0.1", "localhost", "::1"):
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"


def discover(base):
    """SMART App Launch §2.1: the configuration lives under the FHIR base, without a token."""
    response = requests.get(f"{base}/.well-known/smart-configuration", headers={"Accept": "application/json"},
                            timeout=TIMEOUT)
    expect(response.status_code == 200, f"smart-configuration answered {response.status_code}")
    config = response.json()
    for field in ("authorization_endpoint", "token_endpoint", "capabilities", "jwks_uri"):
        expect(field in config, f"smart-configuration has no {field}")
    return config


# --- the browser -----------------------------------------------------------------------------


class Forms(HTMLParser):
    """The forms of a page: action, method, and every input and button with its attributes."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self.current = None

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self.current = {"action": attrs.get("action", ""), "method": attrs.get("method", "get").lower(),
                            "inputs": [], "buttons": []}
            self.forms.append(self.current)
        elif self.current is not None and tag in ("input", "select", "textarea"):
            attrs.setdefault("type", "text" if tag == "input" else tag)
            self.current["inputs"].append(attrs)
        elif self.current is not None and tag == "button":
            self.current["buttons"].append(attrs)

    def handle_endtag(self, tag):
        if tag == "form":
            self.current = None


def the_form(html):
    """The form the page asks the person to fill in (the first that posts)."""
    parser = Forms()
    parser.feed(html)
    posting = [f for f in parser.forms if f["method"] == "post"]
    expect(posting, f"a page without a form to post: {html[:300]}")
    return posting[0]


def fill(form, username, password, new_password):
    """What a person would type into this form: the hidden fields as they are, plus what the
    visible ones ask for. Returns (fields, what kind of form it was)."""
    inputs = form["inputs"]
    of_type = lambda *types: [i for i in inputs if i["type"].lower() in types and i.get("name")]
    secrets, texts = of_type("password"), of_type("text", "email")
    fields = [(i["name"], i.get("value", "")) for i in of_type("hidden")]
    allow = [b for b in form["buttons"] if b.get("value", "").lower() in ("approve", "allow")]
    names = [i.get("name") for i in inputs if i["type"].lower() != "hidden"]
    if len(secrets) == 1 and len(texts) == 1:
        fields += [(texts[0]["name"], username), (secrets[0]["name"], password)]
        return fields, "signin"
    if len(secrets) == 2 and not texts:
        fields += [(s["name"], new_password) for s in secrets]
        return fields, "password-change"
    if allow and not secrets and not texts:
        # Consent: keep every box ticked as offered, and press the button that allows.
        fields += [(i["name"], i.get("value", "on")) for i in of_type("checkbox") if "checked" in i]
        fields.append((allow[0]["name"], allow[0]["value"]))
        return fields, "consent"
    fail(f"a form this client cannot fill (fields {names}, buttons {[b.get('value') for b in form['buttons']]})")


def sign_in_as_browser(authorize_url, redirect_uri, username, password, new_password):
    """Walks the server's pages from the authorization URL until it redirects to the app;
    returns the redirect URL and the forms seen, in order."""
    browser = requests.Session()
    browser.headers["Accept"] = "text/html"
    response = browser.get(authorize_url, allow_redirects=False, timeout=TIMEOUT)
    url = authorize_url
    seen = []
    for _ in range(10):
        if response.is_redirect:
            location = urljoin(url, response.headers["Location"])
            if location.startswith(redirect_uri):
                return location, seen
            url = location
            response = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
            continue
        expect(response.status_code == 200, f"{url} answered {response.status_code}: {response.text[:300]}")
        expect(response.headers.get("Content-Type", "").startswith("text/html"), "a page that is not HTML")
        form = the_form(response.text)
        fields, kind = fill(form, username, password, new_password)
        seen.append(kind)
        url = urljoin(url, form["action"])
        response = browser.post(url, data=fields, allow_redirects=False, timeout=TIMEOUT)
    fail(f"no redirect to the app after {seen}")


# --- the app -----------------------------------------------------------------------------------


def fhir_get(session, url, **params):
    response = session.get(url, params=params, headers={"Accept": FHIR_JSON}, timeout=TIMEOUT)
    expect(response.status_code == 200, f"GET {url} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def read_patient_data(session, base, patient, label):
    resource = fhir_get(session, f"{base}/Patient/{patient}")
    expect(resource.get("resourceType") == "Patient" and resource.get("id") == patient, "not the patient asked for")
    name = (resource.get("name") or [{}])[0]
    say(label, "Patient", f"id={patient}", f"family={name.get('family', '')}")
    bundle = fhir_get(session, f"{base}/Observation", patient=patient)
    expect(bundle.get("resourceType") == "Bundle" and bundle.get("type") == "searchset", "not a searchset")
    observations = [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") != "include"]
    codes = sorted(c["code"] for o in observations for c in o.get("code", {}).get("coding", []))
    subjects = sorted({o.get("subject", {}).get("reference", "") for o in observations})
    say(label, "Observation", f"count={len(observations)}", f"codes={','.join(codes)}",
        f"subjects={','.join(subjects)}")


def check_id_token(config, id_token, client_id, base):
    """OpenID Connect Core §3.1.3.7: signed by a key of the issuer, for this client."""
    keys = jwt.PyJWKSet.from_dict(requests.get(config["jwks_uri"], timeout=TIMEOUT).json())
    header = jwt.get_unverified_header(id_token)
    key = next((k for k in keys.keys if header.get("kid") in (None, k.key_id)), None)
    expect(key is not None, "no key of the server's JWK Set signed the id_token")
    claims = jwt.decode(id_token, key.key, algorithms=[header["alg"]], audience=client_id, issuer=base)
    return claims


def standalone(base, client_id, redirect_uri, username, password, new_password):
    allow_loopback_http(base)
    config = discover(base)
    expect("launch-standalone" in config["capabilities"], "no launch-standalone capability")
    expect("S256" in config.get("code_challenge_methods_supported", []), "no S256 PKCE")
    say("discovery", f"authorize={config['authorization_endpoint']}", f"token={config['token_endpoint']}")

    app = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=STANDALONE_SCOPES, pkce="S256")
    authorize_url, state = app.authorization_url(config["authorization_endpoint"], aud=base)
    query = parse_qs(urlparse(authorize_url).query)
    expect(query.get("code_challenge_method") == ["S256"], "requests-oauthlib did not add PKCE")
    # The verifier stays with the app; only its SHA-256 goes out.
    verifier = app._code_verifier
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    expect(query.get("code_challenge") == [challenge], "the challenge is not the S256 of the verifier")

    callback, forms = sign_in_as_browser(authorize_url, redirect_uri, username, password, new_password)
    say("forms", *forms)
    answered = parse_qs(urlparse(callback).query)
    expect("error" not in answered, f"the server redirected with an error: {answered}")
    expect(answered.get("state") == [state], "the state came back changed")
    say("callback", f"code={'yes' if answered.get('code') else 'no'}", "state=ok")

    # The library's default for a client without a secret: it names itself with HTTP Basic and
    # an empty password. The PKCE verifier goes with the code.
    token = app.fetch_token(config["token_endpoint"], authorization_response=callback)
    for field in ("access_token", "patient", "id_token", "refresh_token", "scope"):
        expect(field in token, f"the token response has no {field}: {sorted(token)}")
    expect(token.get("token_type", "").lower() == "bearer", "not a Bearer token")
    patient = token["patient"]
    claims = check_id_token(config, token["id_token"], client_id, base)
    say("token", f"patient={patient}", f"scope={'+'.join(token['scope'])}", f"expires_in={token['expires_in']}",
        f"banner={token.get('need_patient_banner')}", f"fhirUser={claims.get('fhirUser')}")

    read_patient_data(app, base, patient, "read")

    first_access, first_refresh = token["access_token"], token["refresh_token"]
    # SMART: a public app cannot authenticate, so its refresh carries only the refresh token
    # (and the scope); the library sends just that.
    refreshed = app.refresh_token(config["token_endpoint"])
    expect(refreshed["access_token"] != first_access, "the refresh returned the same access token")
    expect(refreshed.get("refresh_token") not in (None, first_refresh), "the refresh token was not rotated")
    expect(refreshed.get("patient") == patient, "the refreshed token lost the patient context")
    say("refresh", f"patient={refreshed['patient']}", f"scope={'+'.join(refreshed['scope'])}")
    read_patient_data(app, base, patient, "reread")

    # RFC 7009: revoking the refresh token ends the grant; the access token stops working.
    revoked = requests.post(config["revocation_endpoint"], timeout=TIMEOUT,
                            data={"token": refreshed["refresh_token"], "client_id": client_id})
    expect(revoked.status_code == 200, f"revocation answered {revoked.status_code}")
    again = requests.post(config["token_endpoint"], timeout=TIMEOUT, data={
        "grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"], "client_id": client_id})
    introspected = requests.post(config["introspection_endpoint"], timeout=TIMEOUT,
                                 data={"token": refreshed["access_token"]},
                                 headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    say("revoke", f"status={revoked.status_code}", f"refresh_after={again.status_code}:{again.json().get('error')}",
        f"introspect_after={introspected.status_code}")


# --- the backend service -----------------------------------------------------------------------

KEYS = (("RS384", "rs384.pem"), ("ES384", "es384.pem"))


def keygen(directory):
    os.makedirs(directory, exist_ok=True)
    made = {
        "RS384": rsa.generate_private_key(public_exponent=65537, key_size=3072),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
    }
    jwks = []
    for alg, file in KEYS:
        private = made[alg]
        with open(os.path.join(directory, file), "wb") as f:
            f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        algorithm = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(private.public_key()))
        if jwk["kty"] == "EC":
            # RFC 7518 §6.2.1.2: each coordinate at the curve's full size (48 octets for P-384).
            for coordinate in ("x", "y"):
                expect(len(jwt.utils.base64url_decode(jwk[coordinate])) == 48, f"a short {coordinate} in the JWK")
        jwk.update({"kid": f"backend-{alg.lower()}", "alg": alg, "use": "sig", "key_ops": ["verify"]})
        jwks.append(jwk)
    with open(os.path.join(directory, "jwks.json"), "w") as f:
        json.dump({"keys": jwks}, f)
    say("keys", *(k["kid"] for k in jwks))


def assertion(client_id, token_endpoint, alg, private_key):
    """SMART Backend Services §Authorization: iss = sub = client_id, aud = the token endpoint,
    exp at most five minutes ahead, a fresh jti, kid naming the registered key."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_endpoint, "exp": now + 240, "iat": now,
              "jti": str(uuid.uuid4())}
    return jwt.encode(claims, private_key, algorithm=alg, headers={"kid": f"backend-{alg.lower()}", "typ": "JWT"})


def backend(base, client_id, key_dir, patient):
    allow_loopback_http(base)
    config = discover(base)
    expect("private_key_jwt" in config.get("token_endpoint_auth_methods_supported", []), "no private_key_jwt")
    expect("client_credentials" in config.get("grant_types_supported", []), "no client_credentials grant")
    token_endpoint = config["token_endpoint"]
    say("discovery", f"token={token_endpoint}",
        f"algs={','.join(config.get('token_endpoint_auth_signing_alg_values_supported', []))}")
    for alg, file in KEYS:
        expect(alg in config.get("token_endpoint_auth_signing_alg_values_supported", []), f"{alg} not supported")
        with open(os.path.join(key_dir, file), "rb") as f:
            private_key = serialization.load_pem_private_key(f.read(), password=None)
        signed = assertion(client_id, token_endpoint, alg, private_key)
        # The scope goes on the oauthlib client: that is where its token request takes it from.
        service = OAuth2Session(client=BackendApplicationClient(client_id=client_id, scope=BACKEND_SCOPES.split()))
        token = service.fetch_token(token_endpoint, include_client_id=True, client_assertion_type=JWT_BEARER,
                                    client_assertion=signed)
        expect(token.get("token_type", "").lower() == "bearer", "not a Bearer token")
        expect("refresh_token" not in token, "a backend service gets no refresh token")
        say("token", alg, f"scope={'+'.join(token['scope'])}", f"expires_in={token['expires_in']}")
        read_patient_data(service, base, patient, f"read-{alg}")
        # The same assertion a second time is a replay (its jti was seen).
        replay = requests.post(token_endpoint, timeout=TIMEOUT, data={
            "grant_type": "client_credentials", "scope": BACKEND_SCOPES, "client_id": client_id,
            "client_assertion_type": JWT_BEARER, "client_assertion": signed})
        say("replay", alg, f"status={replay.status_code}", f"error={replay.json().get('error')}")


def service_token(base, client_id, key_dir, scopes):
    """A backend service's access token for other tests' clients (the Bulk Data client):
    client_credentials with an ES384 private_key_jwt assertion, as in `backend`."""
    allow_loopback_http(base)
    token_endpoint = discover(base)["token_endpoint"]
    with open(os.path.join(key_dir, "es384.pem"), "rb") as f:
        private_key = serialization.load_pem_private_key(f.read(), password=None)
    response = requests.post(token_endpoint, timeout=TIMEOUT, data={
        "grant_type": "client_credentials", "scope": scopes, "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion(client_id, token_endpoint, "ES384", private_key)})
    expect(response.status_code == 200, f"the token request answered {response.status_code}")
    say("service-token", response.json()["access_token"])


def main():
    # Which releases run: the test checks that these are the ones it installed.
    say("libraries", f"requests-oauthlib={requests_oauthlib.__version__}", f"oauthlib={oauthlib.__version__}",
        f"requests={requests.__version__}", f"PyJWT={jwt.__version__}", f"cryptography={cryptography.__version__}")
    args = sys.argv[1:]
    commands = {"keygen": (keygen, 1), "standalone": (standalone, 6), "backend": (backend, 4),
                "service-token": (service_token, 4)}
    if not args or args[0] not in commands or len(args) - 1 != commands[args[0]][1]:
        fail(__doc__)
    command, _ = commands[args[0]]
    command(*args[1:])


if __name__ == "__main__":
    main()
