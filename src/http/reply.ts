import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import {
  errorDef, HG_ERR_AUTH_FORBIDDEN, HG_ERR_INTERNAL, HG_ERR_NOT_FOUND, HG_ERR_REQUEST_BAD, HG_ERR_REQUEST_HEADERS_TOO_LARGE,
  HG_ERR_REQUEST_METHOD, HG_ERR_REQUEST_TIMEOUT, HG_ERR_REQUEST_TOO_LARGE, HG_ERR_REQUEST_VALIDATION, RETRY_AFTER_SECONDS, type ErrorDef
} from '../errors.js'
import { maskCredentials } from '../mask.js'

const JSON_TYPE = 'application/json; charset=utf-8'

export interface ErrorReplyOptions {
  /** Replaces the definition's message (4xx only: a 5xx never says more than its code). */
  message?: string
  /** Seconds for Retry-After; 503 and 429 always carry one. */
  retryAfter?: number
}

function bodyOf (def: ErrorDef, message: string | undefined): string {
  return message === undefined || message === def.message || def.status >= 500 ? def.body : JSON.stringify({ error: def.publicCode, message })
}

/**
 * The one reply writer for errors: every JSON error body of the service is a
 * registered code's `{ error, message }`, with Retry-After on 503 and 429.
 */
export function sendError (reply: FastifyReply, def: ErrorDef, opts?: ErrorReplyOptions): FastifyReply {
  reply.code(def.status).header('content-type', JSON_TYPE)
  const retryAfter = opts?.retryAfter ?? (def.status === 503 || def.status === 429 ? RETRY_AFTER_SECONDS : undefined)
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter))
  return reply.send(bodyOf(def, opts?.message))
}

/** The 403 that names the permission the route needs (docs/DESIGN.md §2 step 7), in a header and the message. */
export function sendForbidden (reply: FastifyReply, permission: string): FastifyReply {
  reply.header('x-hg-required-permission', permission)
  return sendError(reply, HG_ERR_AUTH_FORBIDDEN, { message: `This route needs the permission ${permission}` })
}

/** A 405 with the methods the route has. */
export function sendMethodNotAllowed (reply: FastifyReply, allow: readonly string[]): FastifyReply {
  reply.header('allow', allow.join(', '))
  return sendError(reply, HG_ERR_REQUEST_METHOD)
}

/** fastify's status codes for request errors it raises itself, mapped onto registered codes. */
function requestErrorDef (status: number): ErrorDef {
  switch (status) {
    case 404: return HG_ERR_NOT_FOUND
    case 405: return HG_ERR_REQUEST_METHOD
    case 408: return HG_ERR_REQUEST_TIMEOUT
    case 413: return HG_ERR_REQUEST_TOO_LARGE
    case 431: return HG_ERR_REQUEST_HEADERS_TOO_LARGE
    default: return HG_ERR_REQUEST_BAD
  }
}

/** One error handler for every listener: registered codes map to their body, the rest is never echoed. */
export function errorHandler (error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const err = error as FastifyError
  const def = errorDef(err.code)
  if (def !== undefined) {
    if (def.status >= 500) request.log.error({ err }, 'request failed')
    return sendError(reply, def, { message: err.message })
  }
  const status = err.statusCode ?? 500
  if (err.validation !== undefined) return sendError(reply, HG_ERR_REQUEST_VALIDATION, { message: maskCredentials(err.message) })
  if (status >= 400 && status < 500) return sendError(reply, requestErrorDef(status))
  request.log.error({ err }, 'request failed')
  return sendError(reply, HG_ERR_INTERNAL)
}

/** fastify's frameworkErrors: a request it could not route or parse. */
export function frameworkErrorHandler (_err: unknown, _req: FastifyRequest, reply: FastifyReply): void {
  sendError(reply, HG_ERR_REQUEST_BAD)
}

/** Node's parser error codes that mean the headers were too large. */
const HEADER_OVERFLOW = new Set(['HPE_HEADER_OVERFLOW'])
const TIMEOUT = new Set(['ERR_HTTP_REQUEST_TIMEOUT'])

/**
 * fastify's clientErrorHandler: parser errors (malformed request line or header,
 * oversize headers, header timeout) get the contract's body too, written on the
 * raw socket since no request exists. The connection is closed after it.
 */
export function clientErrorHandler (err: Error & { code?: string }, socket: Socket): void {
  if (socket.destroyed) return
  const code = err.code ?? ''
  // A response already under way on this connection (Node's own rule): nothing can be written cleanly.
  if (code === 'ECONNRESET' || !socket.writable || (socket as { _httpMessage?: unknown })._httpMessage != null) {
    socket.destroy()
    return
  }
  const def = HEADER_OVERFLOW.has(code) ? HG_ERR_REQUEST_HEADERS_TOO_LARGE : TIMEOUT.has(code) ? HG_ERR_REQUEST_TIMEOUT : HG_ERR_REQUEST_BAD
  const reason = def.status === 431 ? 'Request Header Fields Too Large' : def.status === 408 ? 'Request Timeout' : 'Bad Request'
  socket.write(`HTTP/1.1 ${def.status} ${reason}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(def.body)}\r\nConnection: close\r\n\r\n${def.body}`)
  socket.destroy()
}
