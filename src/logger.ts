import pino, { type DestinationStream, type Logger } from 'pino'
import { maskCredentials } from './mask.js'

export type { Logger }

/** Header paths that carry secrets; pino replaces them wherever a request object is logged. */
const REDACT = [
  'req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie', 'req.headers["proxy-authorization"]',
  'headers.authorization', 'headers["x-api-key"]', 'headers.cookie',
  'res.headers["set-cookie"]', 'token', 'secret', 'password', 'adminToken'
]

function describe (value: object): string {
  try {
    return maskCredentials(JSON.stringify(value) ?? '')
  } catch {
    return Object.prototype.toString.call(value)
  }
}

/**
 * Errors as fields, masked. A plain object with a message or code (undici and
 * fastify hand some of those around) keeps them: never "[object Object]".
 */
function errSerializer (err: unknown, depth = 0): Record<string, unknown> {
  if (err === null || typeof err !== 'object') return { message: maskCredentials(String(err)) }
  const e = err as { name?: unknown, message?: unknown, stack?: unknown, code?: unknown, errno?: unknown, syscall?: unknown, cause?: unknown }
  const out: Record<string, unknown> = {}
  if (typeof e.name === 'string') out.type = e.name
  out.message = typeof e.message === 'string' ? maskCredentials(e.message) : err instanceof Error ? '' : describe(err)
  if (typeof e.stack === 'string') out.stack = maskCredentials(e.stack)
  if (e.code !== undefined) out.code = e.code
  if (e.errno !== undefined) out.errno = e.errno
  if (typeof e.syscall === 'string') out.syscall = e.syscall
  if (e.cause !== undefined && depth < 4) out.cause = errSerializer(e.cause, depth + 1)
  // AggregateError (a connect that failed on every address): each address's cause.
  const errors = (err as { errors?: unknown }).errors
  if (Array.isArray(errors) && depth < 4) out.errors = errors.slice(0, 4).map(x => errSerializer(x, depth + 1))
  return out
}

export function createLogger (level: string, destination?: DestinationStream): Logger {
  const opts = {
    level,
    base: { service: 'hg-auth-sidecar' },
    redact: { paths: REDACT, censor: '[redacted]' },
    serializers: { err: (e: unknown) => errSerializer(e), error: (e: unknown) => errSerializer(e) },
    timestamp: pino.stdTimeFunctions.isoTime,
    hooks: {
      // Last line of defence: nothing credential-shaped leaves in a message.
      logMethod (this: Logger, args: Parameters<Logger['info']>, method: (...a: unknown[]) => void) {
        // Copied only when a string actually changes (most calls: a fields object and a fixed message).
        let out: unknown[] = args
        for (let i = 0; i < args.length; i++) {
          const a: unknown = args[i]
          if (typeof a !== 'string') continue
          const masked = maskCredentials(a)
          if (masked === a) continue
          if (out === args) out = [...args]
          out[i] = masked
        }
        method.apply(this, out)
      }
    }
  }
  return pino(opts, destination ?? stdoutDestination())
}

/**
 * Asynchronous writes to stdout, LOG_BUFFER_BYTES at a time: at info level every
 * request logs a line, and one write per line (each an fs.write through libuv's
 * threadpool) cost more CPU than the rest of the logging. Lines wait at most
 * LOG_FLUSH_MS when traffic is too low to fill the buffer; shutdown flushes
 * (server.ts), and so does pino on any process exit.
 */
export const LOG_BUFFER_BYTES = 4096
export const LOG_FLUSH_MS = 250
export const STDOUT_DESTINATION = { dest: 1, sync: false, minLength: LOG_BUFFER_BYTES } as const

/**
 * The buffered stdout, flushed LOG_FLUSH_MS after the first line that waits.
 * Not sonic-boom's periodicFlush: on an empty buffer that still wrote an empty
 * string through the threadpool four times a second, in every idle pod.
 */
export function stdoutDestination (): DestinationStream {
  const dest = pino.destination(STDOUT_DESTINATION)
  const write = dest.write.bind(dest)
  let armed = false
  function flush (): void {
    armed = false
    // With a callback, sonic-boom also writes out what arrived during a write in progress.
    dest.flush(() => {})
  }
  dest.write = (chunk: string): boolean => {
    if (!armed) {
      armed = true
      // Unref'd: an exiting process is flushed by pino's exit handler instead.
      setTimeout(flush, LOG_FLUSH_MS).unref()
    }
    return write(chunk)
  }
  return dest
}

type LevelName = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace'

/**
 * A request's logger, made on its first enabled call. fastify builds one pino
 * child per request; below info level almost no request logs anything, and each
 * child (bindings serialized, level methods copied onto it) was a few µs of CPU
 * and garbage on every proxied request. With a level of its own the child is
 * made at once (the laziness relies on the parent's level).
 */
class LazyChild {
  readonly #parent: Logger
  readonly #bindings: pino.Bindings
  readonly #opts: pino.ChildLoggerOptions
  #real: Logger | null = null

  constructor (parent: Logger, bindings: pino.Bindings, opts: pino.ChildLoggerOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#opts = opts
  }

  #get (): Logger {
    this.#real ??= this.#parent.child(this.#bindings, this.#opts)
    return this.#real
  }

  #log (level: LevelName, args: unknown[]): void {
    if (this.#real === null && !this.#parent.isLevelEnabled(level)) return
    const logger = this.#get()
    ;(logger[level] as (...a: unknown[]) => void).apply(logger, args)
  }

  fatal (...args: unknown[]): void { this.#log('fatal', args) }
  error (...args: unknown[]): void { this.#log('error', args) }
  warn (...args: unknown[]): void { this.#log('warn', args) }
  info (...args: unknown[]): void { this.#log('info', args) }
  debug (...args: unknown[]): void { this.#log('debug', args) }
  trace (...args: unknown[]): void { this.#log('trace', args) }
  silent (): void {}

  child (bindings: pino.Bindings, opts?: pino.ChildLoggerOptions): Logger {
    return this.#get().child(bindings, opts)
  }

  bindings (): pino.Bindings {
    return this.#real === null ? { ...this.#parent.bindings(), ...this.#bindings } : this.#real.bindings()
  }

  isLevelEnabled (level: string): boolean {
    return (this.#real ?? this.#parent).isLevelEnabled(level)
  }

  get level (): string {
    return (this.#real ?? this.#parent).level
  }

  set level (level: string) {
    this.#get().level = level
  }
}

/** fastify's `childLoggerFactory`: request loggers made on first use (see LazyChild). */
export function lazyChildLogger (logger: Logger, bindings: pino.Bindings, opts: pino.ChildLoggerOptions): Logger {
  if (opts.level !== undefined) return logger.child(bindings, opts)
  return new LazyChild(logger, bindings, opts) as unknown as Logger
}
