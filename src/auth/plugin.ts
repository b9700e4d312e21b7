import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { CredentialKind } from '../credentials/format.js'
import { forbiddenBody, RETRY_AFTER_SECONDS } from '../errors.js'
import type { CredentialSource } from './credential-header.js'
import { IdentityHeader } from './identity-headers.js'
import type { Pipeline, PipelineResult } from './pipeline.js'
import type { PolicyDecision } from './policy.js'
import type { Principal } from './principal.js'

/** What the auth hook decided, for the proxy (headers) and the request log. */
export interface RequestAuth {
  reason: string
  kind: CredentialKind | null
  prefix: string | null
  principal: Principal | null
  decision: PolicyDecision | null
  credentialSource: CredentialSource | null
  /** The signed identity assertion for the upstream (DESIGN.md 9), when enabled. */
  assertion?: string
}

declare module 'fastify' {
  interface FastifyRequest {
    hg: RequestAuth | null
  }
}

export interface AuthHookOptions {
  pipeline: Pipeline
  onDecision?: (result: PipelineResult, seconds: number) => void
}

function refuse (reply: FastifyReply, result: Extract<PipelineResult, { pass: false }>): FastifyReply {
  const { error } = result
  reply.code(error.status).header('content-type', 'application/json; charset=utf-8')
  if (error.status === 503) reply.header('retry-after', String(RETRY_AFTER_SECONDS))
  if (result.retryAfter !== undefined) reply.header('retry-after', String(result.retryAfter))
  if (result.requiredPermission !== undefined) {
    reply.header(IdentityHeader.requiredPermission, result.requiredPermission)
    return reply.send(forbiddenBody(result.requiredPermission))
  }
  return reply.send(error.body)
}

/**
 * The access pipeline as an onRequest hook (bodies still stream). Registered
 * inside the proxy's context only: ops and admin listeners never see it.
 * Callback-style: a refusal decided without I/O (401 flood, bad path) is
 * answered in the same tick, and an I/O decision costs one promise, not three.
 */
export function registerAuthHook (app: FastifyInstance, opts: AuthHookOptions): void {
  app.decorateRequest('hg', null)
  const onDecision = opts.onDecision

  function settle (request: FastifyRequest, reply: FastifyReply, result: PipelineResult, start: number, done: (err?: Error) => void): void {
    onDecision?.(result, (performance.now() - start) / 1000)
    if (result.pass) {
      // The pass result carries every RequestAuth field: no copy per request.
      request.hg = result
      done()
      return
    }
    request.hg = { reason: result.reason, kind: result.kind, prefix: result.prefix, principal: null, decision: null, credentialSource: null }
    if (result.cause !== undefined) request.log.error({ err: result.cause }, 'authentication failed inside')
    // Answered here: fastify runs no further hook and no handler (done is not called).
    refuse(reply, result)
  }

  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    const start = performance.now()
    const raw = request.raw
    let out: PipelineResult | Promise<PipelineResult>
    try {
      out = opts.pipeline.run({
        method: raw.method ?? 'GET',
        url: raw.url ?? '/',
        headers: raw.headers,
        rawHeaders: raw.rawHeaders,
        ip: request.ip,
        connection: raw.socket
      })
    } catch (err) {
      done(err as Error)
      return
    }
    if (out instanceof Promise) {
      out.then(result => {
        // fastify catches what a hook throws, not what a promise callback throws: without
        // this a bug here would be an unhandled rejection, which ends the process.
        try {
          settle(request, reply, result, start, done)
        } catch (err) {
          request.log.error({ err }, 'auth hook failed')
          if (!reply.sent) reply.send(err)
        }
      }, done)
    } else {
      settle(request, reply, out, start, done)
    }
  })
}
