import type { IncomingHttpHeaders } from 'node:http'
import { parseCredential, type CredentialKind, type ParsedCredential } from '../credentials/format.js'
import {
  HG_ERR_AUTH_BUSY, HG_ERR_AUTH_FORBIDDEN, HG_ERR_AUTH_FORBIDDEN_ROUTE, HG_ERR_AUTH_RATE_LIMITED, HG_ERR_CLIENT_GONE,
  HG_ERR_INTERNAL, HG_ERR_REQUEST_PATH, errorDef, type ErrorDef
} from '../errors.js'
import { checkPath } from '../proxy/path-guard.js'
import type { CredentialRef } from '../audit/events.js'
import type { Requester } from './bcrypt-pool.js'
import { extractCredential, type CredentialSource } from './credential-header.js'
import { Reason, REASON_ERROR, type AuthResult } from './outcome.js'
import type { Policy, PolicyDecision } from './policy.js'
import type { Principal } from './principal.js'
import type { FailureLimiter } from './rate-limit.js'

/** The little a pipeline needs of a request: testable without a server. */
export interface PipelineRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: readonly string[]
  ip: string
  /** The client's connection: a bcrypt compare still queued when it closes is dropped. */
  connection?: Requester
}

export type PipelineResult =
  | {
    pass: true
    reason: typeof Reason.ok | typeof Reason.public | typeof Reason.passthrough
    principal: Principal | null
    decision: PolicyDecision
    /** Decoded path the policy matched. */
    path: string
    credentialSource: CredentialSource | null
    kind: CredentialKind | null
    prefix: string | null
  }
  | {
    pass: false
    reason: Reason | 'bad_request'
    error: ErrorDef
    kind: CredentialKind | null
    prefix: string | null
    requiredPermission?: string
    retryAfter?: number
    /** What went wrong inside, for the log; never sent to the client. */
    cause?: unknown
    /** The credential refused for its state, its secret verified (the audit trail's use-events). */
    credential?: CredentialRef
  }

export interface PipelineDeps {
  policy: Policy
  limiter: FailureLimiter
  authenticatePat: (cred: ParsedCredential, requester?: Requester) => Promise<AuthResult>
  authenticateApiKey: (cred: ParsedCredential) => Promise<AuthResult>
  apiKeys: 'validate' | 'passthrough' | 'reject'
}

/** DESIGN.md 2.2: the reserved namespace goes first, on every path. */
export function stripReserved (headers: IncomingHttpHeaders): void {
  for (const name in headers) {
    if (name.length > 5 && name.charCodeAt(0) === 120 /* x */ && name.startsWith('x-hg-')) delete headers[name]
  }
}

export interface Pipeline {
  /** A promise only when the decision needs I/O (a credential to check); every other outcome is returned at once. */
  run(req: PipelineRequest): PipelineResult | Promise<PipelineResult>
}

export function createPipeline (deps: PipelineDeps): Pipeline {
  const { policy, limiter } = deps

  function refuse (reason: Reason, error: ErrorDef, kind: CredentialKind | null, prefix: string | null, ip: string, credential?: CredentialRef): PipelineResult {
    if (error.status === 401) limiter.fail(ip)
    return credential === undefined ? { pass: false, reason, error, kind, prefix } : { pass: false, reason, error, kind, prefix, credential }
  }

  function unavailable (cred: ParsedCredential, err: unknown): PipelineResult {
    const def = errorDef((err as { code?: string }).code ?? '') ?? HG_ERR_INTERNAL
    // Neither is a failure inside: a saturated pool is the contract's 503 (and a
    // metric), a client gone is nobody's answer. Only the others carry a cause to log.
    if (def === HG_ERR_CLIENT_GONE) return { pass: false, reason: Reason.clientGone, error: def, kind: cred.kind, prefix: cred.prefix }
    if (def === HG_ERR_AUTH_BUSY) return { pass: false, reason: Reason.unavailable, error: def, kind: cred.kind, prefix: cred.prefix }
    return { pass: false, reason: Reason.unavailable, error: def, kind: cred.kind, prefix: cred.prefix, cause: err }
  }

  return {
    run (req) {
      const checked = checkPath(req.url)
      if (!checked.ok) return { pass: false, reason: 'bad_request', error: HG_ERR_REQUEST_PATH, kind: null, prefix: null }
      stripReserved(req.headers)
      const decision = policy.decide(req.method, checked.path)
      if (decision.public) {
        return { pass: true, reason: Reason.public, principal: null, decision, path: checked.path, credentialSource: null, kind: null, prefix: null }
      }

      const wait = limiter.blocked(req.ip)
      if (wait > 0) return { pass: false, reason: Reason.rateLimited, error: HG_ERR_AUTH_RATE_LIMITED, kind: null, prefix: null, retryAfter: wait }

      const found = extractCredential(req.headers, req.rawHeaders)
      if (!found.found) return refuse(found.reason, REASON_ERROR[found.reason], null, null, req.ip)
      const cred = parseCredential(found.value)
      if (cred === null) return refuse(Reason.malformed, REASON_ERROR.malformed, null, null, req.ip)

      if (cred.kind === 'api_key') {
        if (deps.apiKeys === 'reject') return refuse(Reason.rejected, REASON_ERROR.rejected, cred.kind, cred.prefix, req.ip)
        if (deps.apiKeys === 'passthrough') {
          return { pass: true, reason: Reason.passthrough, principal: null, decision, path: checked.path, credentialSource: found.source, kind: cred.kind, prefix: cred.prefix }
        }
      }
      let pending: Promise<AuthResult>
      try {
        pending = cred.kind === 'pat' ? deps.authenticatePat(cred, req.connection) : deps.authenticateApiKey(cred)
      } catch (err) {
        return unavailable(cred, err)
      }
      const { ip } = req
      const source = found.source
      return pending.then(result => {
        if (!result.ok) return refuse(result.reason, result.error, cred.kind, cred.prefix, ip, result.credential)
        if (decision.deny) {
          return { pass: false, reason: Reason.forbidden, error: HG_ERR_AUTH_FORBIDDEN_ROUTE, kind: cred.kind, prefix: cred.prefix }
        }
        const principal = result.principal
        if (decision.permission !== null && !principal.permissions.includes(decision.permission)) {
          return { pass: false, reason: Reason.forbidden, error: HG_ERR_AUTH_FORBIDDEN, kind: cred.kind, prefix: cred.prefix, requiredPermission: decision.permission }
        }
        return { pass: true, reason: Reason.ok, principal, decision, path: checked.path, credentialSource: source, kind: cred.kind, prefix: cred.prefix }
      }, (err: unknown) => unavailable(cred, err))
    }
  }
}
