import pino, { type DestinationStream, type Logger } from 'pino'
import { maskCredentials } from './credentials/format.js'

export type { Logger }

/** Header paths that carry secrets; pino replaces them wherever a request object is logged. */
const REDACT = [
  'req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie', 'req.headers["proxy-authorization"]',
  'headers.authorization', 'headers["x-api-key"]', 'headers.cookie',
  'res.headers["set-cookie"]', 'token', 'secret', 'password', 'adminToken'
]

function errSerializer (err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: maskCredentials(String(err)) }
  const out: Record<string, unknown> = {
    type: err.name,
    message: maskCredentials(err.message),
    stack: err.stack === undefined ? undefined : maskCredentials(err.stack)
  }
  const code = (err as { code?: unknown }).code
  if (code !== undefined) out.code = code
  if (err.cause !== undefined) out.cause = errSerializer(err.cause)
  return out
}

export function createLogger (level: string, destination?: DestinationStream): Logger {
  const opts = {
    level,
    base: { service: 'hg-auth-sidecar' },
    redact: { paths: REDACT, censor: '[redacted]' },
    serializers: { err: errSerializer, error: errSerializer },
    timestamp: pino.stdTimeFunctions.isoTime,
    hooks: {
      // Last line of defence: nothing credential-shaped leaves in a message.
      logMethod (this: Logger, args: Parameters<Logger['info']>, method: (...a: unknown[]) => void) {
        const mapped = args.map(a => typeof a === 'string' ? maskCredentials(a) : a)
        method.apply(this, mapped)
      }
    }
  }
  // Asynchronous writes to stdout: lines queued while a write is pending go out together,
  // so request logs do not cost a syscall each under load; flushed on shutdown.
  return pino(opts, destination ?? pino.destination({ dest: 1, sync: false }))
}
