import type { IncomingHttpHeaders } from 'node:http'
import httpProxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { IdentityHeader, setAssertionHeader, setIdentityHeaders } from '../auth/identity-headers.js'
import { HG_ERR_NOT_FOUND, HG_ERR_UPSTREAM_REFUSED, HG_ERR_UPSTREAM_TIMEOUT, type ErrorDef } from '../errors.js'

export interface ProxyOptions {
  /** Default upstream origin (UPSTREAM_URL). */
  upstream: string
  timeoutMs: number
  connections: number
  stripCredentialHeader: boolean
  trustProxy: boolean
  onUpstreamResponse?: (statusCode: number, seconds: number) => void
}

const TIMEOUT_CODES = new Set([
  'FST_REPLY_FROM_GATEWAY_TIMEOUT', 'FST_REPLY_FROM_TIMEOUT', 'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'
])

function upstreamError (err: unknown): ErrorDef {
  const code = (err as { code?: string }).code ?? ''
  const cause = (err as { cause?: { code?: string } }).cause?.code ?? ''
  return TIMEOUT_CODES.has(code) || TIMEOUT_CODES.has(cause) ? HG_ERR_UPSTREAM_TIMEOUT : HG_ERR_UPSTREAM_REFUSED
}

function forwardedFor (request: FastifyRequest, trustProxy: boolean): string {
  const socketAddr = request.raw.socket.remoteAddress ?? ''
  const inbound = request.headers['x-forwarded-for']
  // An untrusted client's X-Forwarded-For is dropped, not extended: upstreams must not log a forged chain.
  if (trustProxy && typeof inbound === 'string' && inbound !== '') return `${inbound}, ${socketAddr}`
  return socketAddr
}

/**
 * The catch-all proxy route (DESIGN.md 2.8). Authentication already ran in the
 * auth plugin's onRequest hook; this only rewrites headers and streams.
 */
export default fp<ProxyOptions>(async function proxyPlugin (app: FastifyInstance, opts) {
  const started = Symbol('upstreamStart')
  type Timed = FastifyRequest & { [started]?: number }

  function rewriteRequestHeaders (request: FastifyRequest, headers: IncomingHttpHeaders): IncomingHttpHeaders {
    const hg = request.hg
    if (opts.stripCredentialHeader && hg?.credentialSource != null && hg.reason !== 'passthrough') {
      delete headers[hg.credentialSource]
    }
    if (hg?.credentialSource === null || hg === null) {
      // Public routes: a credential the client sent anyway is not the upstream's business either.
      delete headers['x-api-key']
      const auth = headers.authorization
      if (typeof auth === 'string' && /^bearer\s+hg_/i.test(auth)) delete headers.authorization
    }
    if (hg?.principal != null) setIdentityHeaders(headers, hg.principal)
    setAssertionHeader(headers, hg?.assertion)
    headers['x-forwarded-for'] = forwardedFor(request, opts.trustProxy)
    headers['x-forwarded-proto'] = request.protocol
    const host = request.headers.host
    if (host !== undefined) headers['x-forwarded-host'] = host
    else delete headers['x-forwarded-host']
    headers['x-request-id'] = request.id
    ;(request as Timed)[started] = performance.now()
    return headers
  }

  function rewriteHeaders (headers: Record<string, unknown>, request: FastifyRequest): Record<string, unknown> {
    const expires = request.hg?.principal?.expiresAt
    if (expires != null) headers[IdentityHeader.tokenExpires] = expires
    return headers
  }

  function onError (reply: FastifyReply, { error }: { error: unknown }): void {
    const def = upstreamError(error)
    reply.request.log.warn({ err: { code: (error as { code?: string }).code } }, 'upstream failed')
    reply.code(def.status).header('content-type', 'application/json; charset=utf-8').send(def.body)
  }

  /** WebSocket upgrades (DESIGN.md 2.8): authenticated by the same onRequest hook; the upstream gets the same identity. */
  function wsHeaders (_base: Record<string, string>, request: FastifyRequest): Record<string, string> {
    const headers: Record<string, string | string[] | undefined> = {}
    for (const k of ['cookie', 'user-agent', 'origin', 'accept-language']) {
      if (request.headers[k] !== undefined) headers[k] = request.headers[k]
    }
    const hg = request.hg
    if (hg?.reason === 'passthrough' && hg.credentialSource !== null) headers[hg.credentialSource] = request.headers[hg.credentialSource]
    if (hg?.principal != null) setIdentityHeaders(headers, hg.principal)
    setAssertionHeader(headers, hg?.assertion)
    headers['x-forwarded-for'] = forwardedFor(request, opts.trustProxy)
    headers['x-forwarded-proto'] = request.protocol
    if (request.headers.host !== undefined) headers['x-forwarded-host'] = request.headers.host
    headers['x-request-id'] = request.id
    return headers as Record<string, string>
  }

  await app.register(httpProxy as unknown as FastifyPluginAsync<Record<string, unknown>>, {
    upstream: '',
    websocket: true,
    wsClientOptions: { rewriteRequestHeaders: wsHeaders },
    proxyPayloads: false,
    undici: {
      connections: opts.connections,
      pipelining: 1,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connectTimeout: Math.min(opts.timeoutMs, 5000)
    },
    replyOptions: {
      getUpstream: (request: FastifyRequest) => request.hg?.decision?.upstream ?? opts.upstream,
      rewriteRequestHeaders,
      rewriteHeaders,
      onError,
      onResponse: undefined
    },
    // The raw target keeps the query string byte for byte (http-proxy would re-serialize it).
    handler: (request: FastifyRequest, reply: FastifyReply, _dest: string, options: Parameters<FastifyReply['from']>[1]) => {
      // Self-service paths the sidecar has no route for are still never forwarded.
      if (request.hg?.decision?.local === true) {
        return reply.code(404).header('content-type', 'application/json; charset=utf-8').send(HG_ERR_NOT_FOUND.body)
      }
      return reply.from(request.raw.url, options)
    },
    disableRequestLogging: true
  })

  if (opts.onUpstreamResponse !== undefined) {
    const observe = opts.onUpstreamResponse
    app.addHook('onResponse', (request, reply, done) => {
      const t = (request as Timed)[started]
      if (t !== undefined) observe(reply.statusCode, (performance.now() - t) / 1000)
      done()
    })
  }
}, { name: 'hg-proxy', fastify: '5.x' })
