"""OIDC bearer tokens as access-policy subjects: a JWT verified against a JWKS file from the environment.

Why a file and not the issuer's URL: every process that enforces the policy (the daemon, each service
worker) verifies on its own, and a file the operator's tooling refreshes needs no network from the
request path. Only asymmetric algorithms are accepted (never `none` or an HMAC secret guessed from a
public key). A verified token becomes the subjects `user:<sub>` and `group:<g>` for each group of the
groups claim, which the policy maps to roles with `g, group:ml-team, role:operator`.

    SPECD_OIDC_JWKS_FILE      path of the JWKS (JSON)            (unset: bearer JWTs are not accepted)
    SPECD_OIDC_ISSUER         expected `iss`                       (optional)
    SPECD_OIDC_AUDIENCE       expected `aud`                       (optional)
    SPECD_OIDC_GROUPS_CLAIM   claim holding the groups (default `groups`)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class InvalidToken(ValueError):
    """A bearer JWT that does not verify (signature, expiry, issuer, audience): a 401."""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class Verifier:
    def __init__(self, jwks_file: str | os.PathLike, issuer: str | None = None, audience: str | None = None, groups_claim: str = "groups"):
        import jwt

        self.path = Path(jwks_file)
        self.jwks = jwt.PyJWKSet.from_json(self.path.read_text(encoding="utf-8"))
        self.issuer, self.audience, self.groups_claim = issuer, audience, groups_claim

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Verifier | None:
        path = environ.get("SPECD_OIDC_JWKS_FILE")
        if not path:
            return None
        return cls(path, environ.get("SPECD_OIDC_ISSUER") or None, environ.get("SPECD_OIDC_AUDIENCE") or None,
                   environ.get("SPECD_OIDC_GROUPS_CLAIM") or "groups")

    def subjects(self, token: str) -> list[str]:
        """`user:<sub>` then `group:<g>` per group; InvalidToken (no detail of the token) otherwise."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
            kid, alg = header.get("kid"), header.get("alg")
            if alg not in ASYMMETRIC:
                raise InvalidToken(f"algorithm {alg!r} not accepted")
            keys = [k for k in self.jwks.keys if kid is None or k.key_id == kid]
            if not keys:
                raise InvalidToken("no key of the JWKS matches the token's kid")
            key = keys[0]
            if key.algorithm_name and key.algorithm_name != alg:
                raise InvalidToken("the token's algorithm does not match its key")
            claims = jwt.decode(token, key=key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None})
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        groups = claims.get(self.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        return [f"user:{claims['sub']}", *(f"group:{g}" for g in groups if isinstance(g, str))]
