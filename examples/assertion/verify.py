# Verifies the sidecar's x-hg-assertion in the guarded service (pip install "pyjwt[crypto]").
import jwt

jwks = jwt.PyJWKClient("http://127.0.0.1:9090/.well-known/jwks.json")  # cached; fetched again for an unknown kid


def verify(headers, audience, issuer="hg-auth-sidecar"):
    """The caller's identity {sub, org, role, permissions, cred_type, cred_id}; raises jwt.PyJWTError: answer 401."""
    token = headers["x-hg-assertion"]
    key = jwks.get_signing_key_from_jwt(token).key
    return jwt.decode(token, key, algorithms=["EdDSA"], audience=audience, issuer=issuer,
                      options={"require": ["sub", "iat", "exp"]})


if __name__ == "__main__":
    # python3 verify.py JWKS_URL AUDIENCE < assertion: prints the claims as JSON, or exits 1 naming the error.
    import json
    import sys
    jwks = jwt.PyJWKClient(sys.argv[1])
    try:
        print(json.dumps(verify({"x-hg-assertion": sys.stdin.read().strip()}, sys.argv[2])))
    except jwt.PyJWTError as err:
        print(type(err).__name__, file=sys.stderr)
        sys.exit(1)
