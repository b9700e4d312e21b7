import { availableParallelism } from 'node:os'
import { createSidecar, type Sidecar } from './app.js'
import type { Config } from './config/schema.js'
import type { Logger } from './logger.js'

/** libuv's threadpool runs bcrypt: size it to the cores unless the operator chose. Call before any threadpool use. */
export function sizeThreadpool (env: NodeJS.ProcessEnv = process.env): void {
  if (env.UV_THREADPOOL_SIZE === undefined) env.UV_THREADPOOL_SIZE = String(Math.max(4, availableParallelism()))
}

export interface Served {
  sidecar: Sidecar
  port: number
  opsPort: number
}

/** serve: build, listen, and drain on SIGTERM/SIGINT. */
export async function serve (config: Config, log: Logger): Promise<Served> {
  const sidecar = await createSidecar(config, { logger: log })
  const { port, opsPort } = await sidecar.listen()
  log.info({ port, opsPort, upstream: config.upstream.url, redis: config.redis.url === null ? 'in-process' : 'redis' }, 'hg-auth-sidecar listening')

  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info({ signal, graceMs: config.server.shutdownGraceMs }, 'shutting down: draining in-flight requests')
    const force = setTimeout(() => {
      log.warn('grace period over; exiting with requests still in flight')
      process.exit(1)
    }, config.server.shutdownGraceMs)
    force.unref()
    sidecar.close().then(() => {
      log.info('shut down cleanly')
      log.flush?.()
      process.exit(0)
    }, (err: unknown) => {
      log.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  }
  process.once('SIGTERM', () => stop('SIGTERM'))
  process.once('SIGINT', () => stop('SIGINT'))
  return { sidecar, port, opsPort }
}
