import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { HG_ERR_REQUEST_BODIES, HG_ERR_REQUEST_TIMEOUT } from '../errors.js'
import { sendError } from '../http/reply.js'

export interface BodyTimeoutOptions {
  /** Silence this long while the sidecar waits for the body -> 408 and the connection closed; 0 disables. */
  idleTimeoutMs: number
  /** After the first RATE_GRACE_MS of waiting (or the idle timeout, if shorter), the body's average rate must stay at or above this; 0 disables. */
  minBytesPerSecond: number
  /**
   * Concurrent requests with a body per client address (request.ip: with
   * trustProxy, the first untrusted one), counted until each request closes;
   * beyond it 429 at once. 0 disables.
   */
  maxPerClient?: number
  /** How often the watched bodies are checked (default: a quarter of the idle timeout, 50 ms to 1 s). */
  checkIntervalMs?: number
  onTimeout?: (reason: 'idle' | 'rate' | 'per-client') => void
}

interface Watched {
  request: FastifyRequest
  reply: FastifyReply
  /** socket.bytesRead at the last check. */
  lastRead: number
  /** Body bytes seen so far (socket bytes since the headers). */
  bytes: number
  /** ms spent waiting on the client: the sidecar had read everything and wanted more. */
  waited: number
  /** ms of that waiting since the last byte. */
  idle: number
}

const kCut = Symbol('hgBodyCut')

/**
 * The minimum rate is checked from this much waiting on: long enough for any real
 * client's first packets, short enough that trickled bodies cannot hold the
 * upstream pool for long.
 */
export const RATE_GRACE_MS = 2000

/** Whether the watcher cut this request's body (the proxy's error handler then stays silent). */
export function bodyWasCut (request: FastifyRequest): boolean {
  return (request as FastifyRequest & { [kCut]?: boolean })[kCut] === true
}

function hasBody (request: FastifyRequest): boolean {
  const h = request.headers
  if (h.upgrade !== undefined) return false
  if (h['transfer-encoding'] !== undefined) return true
  const len = h['content-length']
  return len !== undefined && len !== '0'
}

/**
 * Request bodies must keep arriving (docs/DESIGN.md §2.1), on every route, public
 * ones too: a body is streamed to the upstream as it comes, so a client that
 * trickles one holds an upstream connection. Time counts only while the
 * sidecar waits on the client (its buffer of the body is empty); a body held
 * back because the upstream reads slowly is not the client's fault. One timer
 * per listener checks every watched body.
 */
export function registerBodyTimeout (app: FastifyInstance, opts: BodyTimeoutOptions): void {
  const maxPerClient = opts.maxPerClient ?? 0
  if (opts.idleTimeoutMs <= 0 && opts.minBytesPerSecond <= 0 && maxPerClient <= 0) return
  const grace = opts.idleTimeoutMs > 0 ? Math.min(opts.idleTimeoutMs, RATE_GRACE_MS) : RATE_GRACE_MS
  const every = opts.checkIntervalMs ?? Math.min(1000, Math.max(50, Math.floor(grace / 4)))
  const watched = new Set<Watched>()
  let timer: NodeJS.Timeout | null = null
  let last = 0

  function cut (w: Watched, reason: 'idle' | 'rate'): void {
    watched.delete(w)
    const { request, reply } = w
    ;(request as FastifyRequest & { [kCut]?: boolean })[kCut] = true
    opts.onTimeout?.(reason)
    request.log.info({ reason, bodyBytes: w.bytes, waitedMs: Math.round(w.waited) }, 'request body too slow: cut')
    const socket = request.raw.socket
    if (reply.sent || reply.raw.headersSent) {
      socket.destroy()
      return
    }
    reply.header('connection', 'close')
    // The upstream request (if any) is aborted with the body stream; the client gets the 408 first.
    reply.raw.once('finish', () => { request.raw.destroy(); socket.destroySoon() })
    sendError(reply, HG_ERR_REQUEST_TIMEOUT)
    setTimeout(() => socket.destroy(), 1000).unref()
  }

  function check (): void {
    const now = performance.now()
    const elapsed = now - last
    last = now
    for (const w of watched) {
      const req = w.request.raw
      if (req.complete || req.destroyed || req.socket === null || req.socket.destroyed) {
        watched.delete(w)
        continue
      }
      const read = req.socket.bytesRead
      const delta = read - w.lastRead
      w.lastRead = read
      w.bytes += delta
      if (delta > 0) w.idle = 0
      // Bytes buffered and unread: the sidecar (or the upstream behind it) is the slow side.
      if (req.readableLength > 0) continue
      w.waited += elapsed
      if (delta === 0) w.idle += elapsed
      if (opts.idleTimeoutMs > 0 && w.idle >= opts.idleTimeoutMs) cut(w, 'idle')
      else if (opts.minBytesPerSecond > 0 && w.waited >= grace && w.bytes / (w.waited / 1000) < opts.minBytesPerSecond) cut(w, 'rate')
    }
    if (watched.size === 0 && timer !== null) {
      clearInterval(timer)
      timer = null
    }
  }

  /** Bodies in progress by client address; an entry goes when its request closes. */
  const perClient = new Map<string, number>()

  app.addHook('onRequest', (request, reply, done) => {
    if (!hasBody(request) || request.raw.complete) {
      done()
      return
    }
    if (maxPerClient > 0) {
      const ip = request.ip
      const n = perClient.get(ip) ?? 0
      if (n >= maxPerClient) {
        opts.onTimeout?.('per-client')
        // The body is not read: the connection goes with the answer.
        reply.header('connection', 'close')
        sendError(reply, HG_ERR_REQUEST_BODIES)
        return
      }
      perClient.set(ip, n + 1)
      request.raw.once('close', () => {
        const left = (perClient.get(ip) ?? 1) - 1
        if (left <= 0) perClient.delete(ip)
        else perClient.set(ip, left)
      })
    }
    if (opts.idleTimeoutMs > 0 || opts.minBytesPerSecond > 0) {
      watched.add({ request, reply, lastRead: request.raw.socket.bytesRead, bytes: request.raw.readableLength, waited: 0, idle: 0 })
      if (timer === null) {
        last = performance.now()
        timer = setInterval(check, every)
        timer.unref()
      }
    }
    done()
  })
  app.addHook('onClose', (_app, done) => {
    if (timer !== null) clearInterval(timer)
    watched.clear()
    done()
  })
}
