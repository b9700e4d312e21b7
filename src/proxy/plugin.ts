import type { IncomingHttpHeaders } from 'node:http'
import httpProxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { IdentityHeader, upstreamHeaders, type HeaderSet, type UpstreamContext } from '../auth/identity-headers.js'
import { HG_ERR_NOT_FOUND, HG_ERR_UPSTREAM_REFUSED, HG_ERR_UPSTREAM_TIMEOUT, type ErrorDef } from '../errors.js'
import { sendError } from '../http/reply.js'

export interface ProxyOptions {
  /** Default upstream origin (UPSTREAM_URL). */
  upstream: string
  timeoutMs: number
  connections: number
  stripCredentialHeader: boolean
  /** Whether X-Forwarded-For from trusted proxies is kept (fastify's trustProxy decides which). */
  trustProxy: boolean
  /** Stripped headers this upstream needs after all. */
  allowHeaders?: readonly string[]
  onUpstreamResponse?: (statusCode: number, seconds: number) => void
  /** The sidecar answered 502 (refused) or 504 (timeout) for the upstream. */
  onUpstreamError?: (kind: 'refused' | 'timeout') => void
}

const TIMEOUT_CODES = new Set([
  'FST_REPLY_FROM_GATEWAY_TIMEOUT', 'FST_REPLY_FROM_TIMEOUT', 'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'
])

/** Inbound headers a WebSocket upgrade carries on; the credential headers go through the same rules as HTTP. */
const WS_END_TO_END = ['cookie', 'user-agent', 'origin', 'accept-language', 'x-api-key', 'authorization'] as const

function upstreamError (err: unknown): ErrorDef {
  const code = (err as { code?: string }).code ?? ''
  const cause = (err as { cause?: { code?: string } }).cause?.code ?? ''
  return TIMEOUT_CODES.has(code) || TIMEOUT_CODES.has(cause) ? HG_ERR_UPSTREAM_TIMEOUT : HG_ERR_UPSTREAM_REFUSED
}

/**
 * The rebuilt X-Forwarded-For (docs/DESIGN.md §2.1): the socket address, and with
 * trusted proxies the chain they vouch for, up to the first untrusted address
 * (fastify's request.ips, nearest first). What an untrusted client wrote is dropped.
 */
function forwardedFor (request: FastifyRequest, trustProxy: boolean): string {
  const ips = trustProxy ? request.ips : undefined
  if (ips === undefined || ips.length < 2) return request.raw.socket.remoteAddress ?? ''
  return [...ips].reverse().join(', ')
}

/**
 * The catch-all proxy route (docs/DESIGN.md §2 step 8). Authentication already ran in the
 * auth plugin's onRequest hook; this only rewrites headers and streams.
 */
export default fp<ProxyOptions>(async function proxyPlugin (app: FastifyInstance, opts) {
  const started = Symbol('upstreamStart')
  type Timed = FastifyRequest & { [started]?: number }

  const allow: ReadonlySet<string> = new Set(opts.allowHeaders ?? [])

  function context (request: FastifyRequest): UpstreamContext {
    return {
      auth: request.hg,
      forwardedFor: forwardedFor(request, opts.trustProxy),
      proto: request.protocol,
      host: request.headers.host,
      requestId: request.id,
      stripCredentialHeader: opts.stripCredentialHeader,
      allow
    }
  }

  function rewriteRequestHeaders (request: FastifyRequest, headers: IncomingHttpHeaders): IncomingHttpHeaders {
    ;(request as Timed)[started] = performance.now()
    return upstreamHeaders(headers, context(request)) as IncomingHttpHeaders
  }

  function rewriteHeaders (headers: Record<string, unknown>, request: FastifyRequest): Record<string, unknown> {
    const expires = request.hg?.principal?.expiresAt
    if (expires != null) headers[IdentityHeader.tokenExpires] = expires
    return headers
  }

  function onError (reply: FastifyReply, { error }: { error: unknown }): void {
    const def = upstreamError(error)
    opts.onUpstreamError?.(def === HG_ERR_UPSTREAM_TIMEOUT ? 'timeout' : 'refused')
    reply.request.log.warn({ err: error }, 'upstream failed')
    sendError(reply, def)
  }

  /**
   * WebSocket upgrades (docs/DESIGN.md §2 step 8): authenticated by the same onRequest
   * hook, the same header set. The WebSocket client writes its own handshake
   * headers, so only end-to-end ones are taken from the inbound request.
   */
  function wsHeaders (_base: Record<string, string>, request: FastifyRequest): Record<string, string> {
    const headers: HeaderSet = {}
    for (const k of WS_END_TO_END) {
      if (request.headers[k] !== undefined) headers[k] = request.headers[k]
    }
    return upstreamHeaders(headers, context(request)) as Record<string, string>
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
        return sendError(reply, HG_ERR_NOT_FOUND)
      }
      // The path only: reply-from decodes what it is given and refuses `../` anywhere in
      // it, the query included. It then appends the raw query itself, byte for byte
      // (docs/DESIGN.md §2 step 1: the query is data, not a path).
      const raw = request.raw.url ?? '/'
      const q = raw.indexOf('?')
      return reply.from(q === -1 ? raw : raw.slice(0, q), options)
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
