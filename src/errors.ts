import createError, { type FastifyErrorConstructor } from '@fastify/error'

/** The contract's public error codes (docs/DESIGN.md §2 Errors). */
export const PublicCode = {
  badRequest: 'bad_request',
  unauthorized: 'unauthorized',
  tokenExpired: 'token_expired',
  forbidden: 'forbidden',
  notFound: 'not_found',
  methodNotAllowed: 'method_not_allowed',
  rateLimited: 'rate_limited',
  unavailable: 'unavailable',
  badGateway: 'bad_gateway',
  gatewayTimeout: 'gateway_timeout',
  internal: 'internal'
} as const
export type PublicCode = typeof PublicCode[keyof typeof PublicCode]

export interface ErrorDef {
  code: string
  status: number
  publicCode: PublicCode
  message: string
  /** Pre-serialized `{ error, message }` body for the hot path. */
  body: string
  Error: FastifyErrorConstructor<{ code: string }, [string?]>
}

const registry = new Map<string, ErrorDef>()

function define (code: string, publicCode: PublicCode, message: string, status: number): ErrorDef {
  if (registry.has(code)) throw new Error(`error code ${code} defined twice`)
  const def: ErrorDef = {
    code,
    status,
    publicCode,
    message,
    body: JSON.stringify({ error: publicCode, message }),
    Error: createError<[string?]>(code, '%s', status)
  }
  registry.set(code, def)
  return def
}

export function errorDef (code: string): ErrorDef | undefined {
  return registry.get(code)
}

/** Creates the throwable error of a definition; `detail` replaces the default message. */
export function hgError (def: ErrorDef, detail?: string, cause?: unknown): Error & { code: string, statusCode: number } {
  const err = new def.Error(detail ?? def.message)
  if (cause !== undefined) (err as { cause?: unknown }).cause = cause
  return err as Error & { code: string, statusCode: number }
}

// request
export const HG_ERR_REQUEST_PATH = define('HG_ERR_REQUEST_PATH', PublicCode.badRequest, 'Ambiguous or malformed request path', 400)
export const HG_ERR_REQUEST_BAD = define('HG_ERR_REQUEST_BAD', PublicCode.badRequest, 'Malformed request', 400)
export const HG_ERR_REQUEST_VALIDATION = define('HG_ERR_REQUEST_VALIDATION', PublicCode.badRequest, 'Invalid request', 400)
export const HG_ERR_REQUEST_TIMEOUT = define('HG_ERR_REQUEST_TIMEOUT', PublicCode.badRequest, 'The request did not arrive in time', 408)
export const HG_ERR_REQUEST_TOO_LARGE = define('HG_ERR_REQUEST_TOO_LARGE', PublicCode.badRequest, 'The request is too large', 413)
export const HG_ERR_REQUEST_HEADERS_TOO_LARGE = define('HG_ERR_REQUEST_HEADERS_TOO_LARGE', PublicCode.badRequest, 'The request headers are too large', 431)
export const HG_ERR_REQUEST_METHOD = define('HG_ERR_REQUEST_METHOD', PublicCode.methodNotAllowed, 'Method not allowed', 405)

// auth: one message for every kind of 401 but expiry (the contract)
export const HG_ERR_AUTH_INVALID = define('HG_ERR_AUTH_INVALID', PublicCode.unauthorized, 'Invalid or inactive credential', 401)
export const HG_ERR_AUTH_EXPIRED = define('HG_ERR_AUTH_EXPIRED', PublicCode.tokenExpired, 'The credential has expired', 401)
export const HG_ERR_AUTH_FORBIDDEN = define('HG_ERR_AUTH_FORBIDDEN', PublicCode.forbidden, 'The credential lacks the permission this route needs', 403)
export const HG_ERR_AUTH_FORBIDDEN_ROUTE = define('HG_ERR_AUTH_FORBIDDEN_ROUTE', PublicCode.forbidden, 'No route allows this request', 403)
// Never reaches a client: the connection is gone. 499 as nginx logs it, for the request log.
export const HG_ERR_CLIENT_GONE = define('HG_ERR_CLIENT_GONE', PublicCode.badRequest, 'The client closed the connection before its credential was checked', 499)
export const HG_ERR_AUTH_RATE_LIMITED = define('HG_ERR_AUTH_RATE_LIMITED', PublicCode.rateLimited, 'Too many failed authentications; retry later', 429)
export const HG_ERR_AUTH_BUSY = define('HG_ERR_AUTH_BUSY', PublicCode.unavailable, 'Credential verification is saturated; retry shortly', 503)

// admin API
export const HG_ERR_ADMIN_UNAUTHORIZED = define('HG_ERR_ADMIN_UNAUTHORIZED', PublicCode.unauthorized, 'Admin token required', 401)

// management (CLI, admin and self-service)
export const HG_ERR_MGMT_NOT_FOUND = define('HG_ERR_MGMT_NOT_FOUND', PublicCode.notFound, 'Not found', 404)
export const HG_ERR_MGMT_INVALID = define('HG_ERR_MGMT_INVALID', PublicCode.badRequest, 'Invalid request', 400)
export const HG_ERR_MGMT_NAME_CHARS = define('HG_ERR_MGMT_NAME_CHARS', PublicCode.badRequest, 'name must not contain control characters, line breaks or bidirectional-text controls', 400)
export const HG_ERR_MGMT_PAT_ONLY = define('HG_ERR_MGMT_PAT_ONLY', PublicCode.forbidden, 'Personal access tokens are listed with a personal access token', 403)
export const HG_ERR_MGMT_PAT_REVOKE_PAT_ONLY = define('HG_ERR_MGMT_PAT_REVOKE_PAT_ONLY', PublicCode.forbidden, 'Personal access tokens are revoked here with a personal access token of their org; an API key cannot revoke one (the admin API can)', 403)

// store
export const HG_ERR_STORE_UNAVAILABLE = define('HG_ERR_STORE_UNAVAILABLE', PublicCode.unavailable, 'The credential store is unavailable; retry shortly', 503)

// upstream
export const HG_ERR_UPSTREAM_REFUSED = define('HG_ERR_UPSTREAM_REFUSED', PublicCode.badGateway, 'The upstream service could not be reached', 502)
export const HG_ERR_UPSTREAM_TIMEOUT = define('HG_ERR_UPSTREAM_TIMEOUT', PublicCode.gatewayTimeout, 'The upstream service did not answer in time', 504)

// anything else
export const HG_ERR_INTERNAL = define('HG_ERR_INTERNAL', PublicCode.internal, 'Internal error', 500)
export const HG_ERR_NOT_FOUND = define('HG_ERR_NOT_FOUND', PublicCode.notFound, 'Not found', 404)
export const HG_ERR_OVERLOADED = define('HG_ERR_OVERLOADED', PublicCode.unavailable, 'The sidecar is overloaded; retry shortly', 503)

/** Seconds a client should wait after a 503 or 429. */
export const RETRY_AFTER_SECONDS = 1
