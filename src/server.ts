import closeWithGrace from 'close-with-grace'
import { createSidecar, type Sidecar } from './app.js'
import { checkAdminExposure, ConfigError } from './config/load.js'
import type { Config } from './config/schema.js'
import { mintDemoToken, seedDemo, type DemoSeed } from './demo/seed.js'
import { startDemoUpstream, type DemoUpstream } from './demo/upstream.js'
import type { Logger } from './logger.js'
import type { CreatedCredential } from './management/service.js'
import type { EmbeddedPostgres } from './store/embedded.js'
import { DatabaseConfigError, resolveDatabase } from './store/open.js'

export interface Backends {
  /** The config with the embedded database and the demo upstream filled in. */
  config: Config
  embedded: EmbeddedPostgres | null
  demoUpstream: DemoUpstream | null
  close(): Promise<void>
}

/**
 * docs/DESIGN.md §6: no DATABASE_URL -> embedded PostgreSQL, no UPSTREAM_URL -> the
 * demo upstream. Refused under NODE_ENV=production, where a forgotten
 * variable must not quietly become a toy.
 */
export async function resolveBackends (config: Config, env: NodeJS.ProcessEnv): Promise<Backends> {
  if (env.NODE_ENV === 'production' && config.upstream.url === null) {
    throw new ConfigError('UPSTREAM_URL is required when NODE_ENV=production (the demo upstream only echoes)')
  }
  let database
  try {
    database = await resolveDatabase(config, env)
  } catch (err) {
    throw err instanceof DatabaseConfigError ? new ConfigError(err.message) : err
  }
  let demoUpstream: DemoUpstream | null = null
  let resolved = database.config
  if (config.upstream.url === null) {
    try {
      demoUpstream = await startDemoUpstream()
    } catch (err) {
      await database.close()
      throw err
    }
    resolved = { ...resolved, upstream: { ...resolved.upstream, url: demoUpstream.url } }
  }
  return {
    config: resolved,
    embedded: database.embedded,
    demoUpstream,
    async close () {
      await demoUpstream?.close()
      await database.close()
    }
  }
}

export interface ServeOptions {
  env?: NodeJS.ProcessEnv
  /** `hg-sidecar demo`: seed and print a fresh demo token whatever the database. */
  demo?: boolean
  /** Runs after shutdown (the demo's temp directory). */
  onClosed?: () => Promise<void> | void
  out?: NodeJS.WritableStream
}

export interface Served {
  sidecar: Sidecar
  port: number
  opsPort: number
  close(): Promise<void>
}

function localUrl (host: string, port: number): string {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host
  return `http://${h}:${port}`
}

function banner (b: Backends, original: Config, ports: { port: number, opsPort: number }, seed: DemoSeed | null, token: CreatedCredential | null): string {
  const proxyUrl = localUrl(original.server.host, ports.port)
  const lines = [
    '',
    'hg-auth-sidecar is running',
    `  proxy     ${proxyUrl}  ->  ${b.demoUpstream !== null ? 'built-in demo upstream (echo; set UPSTREAM_URL for a real one)' : original.upstream.url ?? ''}`,
    `  ops       ${localUrl(original.server.host, ports.opsPort)}/healthz  /readyz  /metrics`,
    `  database  ${b.embedded !== null ? `EMBEDDED PostgreSQL (PGlite) in ${b.embedded.dataDir}: for trying, development and single-replica use; set DATABASE_URL in production` : 'PostgreSQL (DATABASE_URL)'}`,
    `  cache     ${original.redis.url === null ? 'in-process prefix cache (set REDIS_URL to share it between replicas)' : 'Redis (REDIS_URL)'}`,
    ''
  ]
  if (token !== null) {
    lines.push(
      'Demo token, shown this once (admin of the demo org):',
      '',
      `  ${token.token}`,
      '',
      'Try it:',
      '',
      `  curl -s -H 'X-API-Key: ${token.token}' ${proxyUrl}/api/scans`,
      ''
    )
  } else if (seed !== null) {
    lines.push(
      `Data reused from ${b.embedded?.dataDir ?? 'the database'}; the demo token was printed on the first start.`,
      'To mint a new demo token, stop this process and run:  npx hg-sidecar demo',
      `or:  npx hg-sidecar token create --user-id ${seed.userId} --org-id ${seed.orgId} --name mine`,
      ''
    )
  }
  return lines.join('\n') + '\n'
}

/** serve and demo: resolve the backends, build, listen, print the banner, drain on SIGTERM/SIGINT. */
export async function serve (config: Config, log: Logger, opts: ServeOptions = {}): Promise<Served> {
  const env = opts.env ?? process.env
  // Before the embedded database or the demo upstream start.
  checkAdminExposure(config)
  const backends = await resolveBackends(config, env)
  let sidecar: Sidecar
  try {
    sidecar = await createSidecar(backends.config, { logger: log })
  } catch (err) {
    await backends.close()
    throw err
  }

  let seed: DemoSeed | null = null
  let token: CreatedCredential | null = null
  try {
    if (backends.embedded !== null || opts.demo === true) {
      seed = await seedDemo(sidecar.db)
      if (seed.created || opts.demo === true) {
        token = await mintDemoToken(sidecar.service, seed)
      }
    }
  } catch (err) {
    await sidecar.close()
    await backends.close()
    throw err
  }

  const ports = await sidecar.listen()
  const upstream = backends.demoUpstream !== null ? 'demo' : new URL(backends.config.upstream.url ?? '').origin
  log.info({ ...ports, upstream, embeddedDatabase: backends.embedded !== null, demoUpstream: backends.demoUpstream !== null, redis: config.redis.url !== null }, 'hg-auth-sidecar listening')
  // stdout carries the JSON log: the text banner goes there only for a person at a terminal.
  // In production the line above says it all, unless there is a demo token to show.
  const production = env.NODE_ENV === 'production'
  const out = opts.out ?? (!production && process.stdout.isTTY ? process.stdout : process.stderr)
  if (!production || token !== null || opts.out !== undefined) out.write(banner(backends, config, ports, seed, token))

  let closing: Promise<void> | null = null
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await sidecar.close()
      await backends.close()
      await opts.onClosed?.()
    })()
    return closing
  }

  // SIGTERM/SIGINT (and an uncaught error) drain in-flight requests within the grace period, then exit.
  closeWithGrace({
    delay: config.server.shutdownGraceMs,
    logger: false,
    onTimeout: () => log.warn('grace period over; exiting with requests still in flight')
  }, async ({ signal, err }) => {
    if (err !== undefined) log.fatal({ err }, 'uncaught error: shutting down')
    else log.info({ signal, graceMs: config.server.shutdownGraceMs }, 'shutting down: draining in-flight requests')
    try {
      await close()
      log.info('shut down cleanly')
    } catch (closeErr) {
      log.error({ err: closeErr }, 'shutdown failed')
      throw closeErr
    } finally {
      await new Promise<void>(resolve => log.flush(() => resolve()))
    }
  })
  return { sidecar, ...ports, close }
}
