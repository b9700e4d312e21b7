import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { HG_ERR_REQUEST_BODIES, HG_ERR_REQUEST_TIMEOUT } from '../errors.js'
import { sendError } from '../http/reply.js'

export interface BodyTimeoutOptions {
  /** Silence this long while the sidecar waits for the body -> 408 and the connection closed; 0 disables. */
  idleTimeoutMs: number
  /** After the first RATE_GRACE_MS of waiting (or the idle timeout, if shorter), the body's average rate must stay at or above this; 0 disables. */
  minBytesPerSecond: number
  /**
   * Requests whose body is still arriving, per client address (request.ip: with
   * trustProxy, the first untrusted one); one more gets 429 at once. 0 disables.
   */
  maxPerClient?: number
  /** How often the watched bodies are checked (default: a quarter of the idle timeout, 50 ms to 1 s). */
  checkIntervalMs?: number
  onRefuse?: (reason: 'idle' | 'rate' | 'per-client') => void
}

interface Watched {
  request: FastifyRequest
  reply: FastifyReply
  ip: string
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

/** The body has arrived in full, or the request is gone. */
function done (w: Watched): boolean {
  const req = w.request.raw
  return req.complete || req.destroyed || req.socket === null || req.socket.destroyed
}

/**
 * Request bodies must keep arriving (docs/DESIGN.md §2.1), on every route, public
 * ones too: a body is streamed to the upstream as it comes, so a client that
 * trickles one holds an upstream connection. Time counts only while the
 * sidecar waits on the client (its buffer of the body is empty); a body held
 * back because the upstream reads slowly is not the client's fault. One timer
 * per listener checks every watched body. A client address has at most
 * maxPerClient bodies arriving at once, so that it cannot take the whole
 * upstream pool even within the rate check's grace.
 */
export function registerBodyTimeout (app: FastifyInstance, opts: BodyTimeoutOptions): void {
  const maxPerClient = opts.maxPerClient ?? 0
  const timed = opts.idleTimeoutMs > 0 || opts.minBytesPerSecond > 0
  if (!timed && maxPerClient <= 0) return
  const grace = opts.idleTimeoutMs > 0 ? Math.min(opts.idleTimeoutMs, RATE_GRACE_MS) : RATE_GRACE_MS
  const every = opts.checkIntervalMs ?? Math.min(1000, Math.max(50, Math.floor((opts.idleTimeoutMs > 0 ? opts.idleTimeoutMs : 4000) / 4)))
  const watched = new Set<Watched>()
  /** The watched bodies by client address. */
  const byClient = new Map<string, Set<Watched>>()
  let timer: NodeJS.Timeout | null = null
  let last = 0

  function forget (w: Watched): void {
    watched.delete(w)
    const mine = byClient.get(w.ip)
    if (mine === undefined) return
    mine.delete(w)
    if (mine.size === 0) byClient.delete(w.ip)
  }

  function cut (w: Watched, reason: 'idle' | 'rate'): void {
    forget(w)
    const { request, reply } = w
    ;(request as FastifyRequest & { [kCut]?: boolean })[kCut] = true
    opts.onRefuse?.(reason)
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
      if (done(w)) {
        forget(w)
        continue
      }
      if (!timed) continue
      const req = w.request.raw
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

  /** Whether this address already has maxPerClient bodies arriving (counted exactly: finished ones are dropped first). */
  function full (ip: string): boolean {
    const mine = byClient.get(ip)
    if (maxPerClient <= 0 || mine === undefined || mine.size < maxPerClient) return false
    for (const w of mine) if (done(w)) forget(w)
    return (byClient.get(ip)?.size ?? 0) >= maxPerClient
  }

  app.addHook('onRequest', (request, reply, next) => {
    if (!hasBody(request) || request.raw.complete) {
      next()
      return
    }
    const ip = request.ip
    if (full(ip)) {
      opts.onRefuse?.('per-client')
      // The body is not read: the connection goes with the answer.
      reply.header('connection', 'close')
      sendError(reply, HG_ERR_REQUEST_BODIES)
      return
    }
    const w: Watched = { request, reply, ip, lastRead: request.raw.socket.bytesRead, bytes: request.raw.readableLength, waited: 0, idle: 0 }
    watched.add(w)
    if (maxPerClient > 0) {
      let mine = byClient.get(ip)
      if (mine === undefined) byClient.set(ip, mine = new Set())
      mine.add(w)
    }
    if (timer === null) {
      last = performance.now()
      timer = setInterval(check, every)
      timer.unref()
    }
    next()
  })
  app.addHook('onClose', (_app, closeDone) => {
    if (timer !== null) clearInterval(timer)
    watched.clear()
    byClient.clear()
    closeDone()
  })
}
