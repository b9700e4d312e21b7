// Verifies the sidecar's x-hg-assertion in the guarded service (npm install jose).
import { createRemoteJWKSet, jwtVerify } from 'jose'

export function createVerifier ({ jwksUrl = 'http://127.0.0.1:9090/.well-known/jwks.json', audience, issuer = 'hg-auth-sidecar' }) {
  const jwks = createRemoteJWKSet(new URL(jwksUrl)) // cached; fetched again for an unknown kid
  // The caller's identity { sub, org, role, permissions, cred_type, cred_id }, or a rejection: answer 401.
  return async function verify (headers) {
    const token = headers['x-hg-assertion']
    if (typeof token !== 'string') throw new Error('x-hg-assertion is missing')
    const { payload } = await jwtVerify(token, jwks, { algorithms: ['EdDSA'], issuer, audience, requiredClaims: ['sub', 'iat', 'exp'] })
    return payload
  }
}
