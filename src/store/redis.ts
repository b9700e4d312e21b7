import { readFileSync } from 'node:fs'
import type { ConnectionOptions } from 'node:tls'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { Config } from '../config/schema.js'

export type RedisSettings = Config['redis']
export type RedisClient = Redis | Cluster
export type RedisTopology = 'standalone' | 'sentinel' | 'cluster'

/** Which Redis the settings name; null = none (an in-process cache serves instead). */
export function redisTopology (cfg: RedisSettings): RedisTopology | null {
  if (cfg.clusterNodes.length > 0) return 'cluster'
  if (cfg.sentinels.length > 0) return 'sentinel'
  return cfg.url === null ? null : 'standalone'
}

/** `host:port` or `[v6]:port` (the config schema has checked the shape). */
export function parseHostPort (text: string): { host: string, port: number } {
  const i = text.lastIndexOf(':')
  const host = text.slice(0, i)
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(text.slice(i + 1)) }
}

function tlsOptions (cfg: RedisSettings): ConnectionOptions {
  const read = (file: string | null): Buffer | undefined => file === null ? undefined : readFileSync(file)
  const out: ConnectionOptions = {}
  const ca = read(cfg.tls.caFile)
  const cert = read(cfg.tls.certFile)
  const key = read(cfg.tls.keyFile)
  if (ca !== undefined) out.ca = ca
  if (cert !== undefined) out.cert = cert
  if (key !== undefined) out.key = key
  return out
}

const READONLY = /^READONLY\b/

/**
 * The options every connection shares: commands fail at once instead of
 * queueing while Redis is away (PostgreSQL answers then), and reconnects back
 * off to 2 s. READONLY means a failover turned this node into a replica:
 * reconnecting asks the sentinels (or DNS) for the master again.
 */
function baseOptions (cfg: RedisSettings): RedisOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: cfg.commandTimeoutMs,
    connectTimeout: 2000,
    retryStrategy: times => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    reconnectOnError: err => READONLY.test(err.message)
  }
}

/**
 * One Redis connection for the process, whatever the topology (docs/DESIGN.md §8):
 * standalone (`redis.url`), Sentinel (`redis.sentinels` + `redis.sentinelName`:
 * follows the promoted master after a failover) or Cluster
 * (`redis.clusterNodes`: follows MOVED and slot changes). Its users send
 * single-key commands only, so every command lands on one node. `onError`
 * gets every connection-level error; the caller rate-limits what it logs.
 * The caller owns the client and quits it on close (`closeRedisClient`).
 */
export function createRedisClient (cfg: RedisSettings, onError: (err: Error) => void): RedisClient {
  const topology = redisTopology(cfg)
  if (topology === null) throw new Error('no Redis configured (redis.url, redis.sentinels or redis.clusterNodes)')
  const base = baseOptions(cfg)
  const auth = {
    ...(cfg.username === null ? {} : { username: cfg.username }),
    ...(cfg.password === null ? {} : { password: cfg.password })
  }
  let client: RedisClient
  if (topology === 'cluster') {
    const tls = cfg.tls.enabled ? tlsOptions(cfg) : undefined
    const options: ClusterOptions = {
      enableOfflineQueue: false,
      enableReadyCheck: true,
      scaleReads: 'master',
      slotsRefreshTimeout: 2000,
      clusterRetryStrategy: times => Math.min(100 * 2 ** Math.min(times, 5), 2000),
      // Hostnames go to the TLS handshake as given, so certificates for them verify.
      ...(tls === undefined ? {} : { dnsLookup: (address: string, callback: (err: null, address: string) => void) => callback(null, address) }),
      redisOptions: { ...base, ...auth, ...(tls === undefined ? {} : { tls }) }
    }
    client = new Cluster(cfg.clusterNodes.map(parseHostPort), options)
  } else if (topology === 'sentinel') {
    const tls = cfg.tls.enabled ? tlsOptions(cfg) : undefined
    client = new Redis({
      ...base,
      ...auth,
      sentinels: cfg.sentinels.map(parseHostPort),
      name: cfg.sentinelName ?? undefined,
      role: 'master',
      ...(cfg.sentinelUsername === null ? {} : { sentinelUsername: cfg.sentinelUsername }),
      ...(cfg.sentinelPassword === null ? {} : { sentinelPassword: cfg.sentinelPassword }),
      // ioredis' name for "TLS to the master the sentinels name".
      ...(tls === undefined ? {} : { tls, enableTLSForSentinelMode: true }),
      ...(cfg.tls.sentinels ? { sentinelTLS: tlsOptions(cfg) } : {}),
      sentinelCommandTimeout: 2000,
      sentinelRetryStrategy: times => Math.min(100 * 2 ** Math.min(times, 5), 2000),
      // Subscribes to +switch-master: the switch is seen when the sentinels decide it,
      // not when a command to the old master fails.
      failoverDetector: true
    })
  } else {
    const url = cfg.url ?? ''
    const tls = cfg.tls.enabled || url.startsWith('rediss:') ? tlsOptions(cfg) : undefined
    client = new Redis(url, { ...base, ...(tls === undefined ? {} : { tls }) })
  }
  client.on('error', onError)
  if (client instanceof Cluster) client.on('node error', onError)
  return client
}

export async function closeRedisClient (client: RedisClient): Promise<void> {
  try {
    if (client.status !== 'end') await client.quit()
  } catch {
  } finally {
    // quit() leaves the Sentinel failover detector's subscriptions reconnecting
    // for ever; disconnect() also closes those.
    client.disconnect()
  }
}

export function waitRedisReady (client: RedisClient, ms: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true)
  return new Promise(resolve => {
    const done = (v: boolean): void => {
      clearTimeout(timer)
      client.off('ready', onReady)
      resolve(v)
    }
    const onReady = (): void => done(true)
    const timer = setTimeout(() => done(false), ms)
    client.once('ready', onReady)
  })
}

/**
 * A short name for what went wrong, safe for logs and labels: the reply's
 * code (`READONLY`, `MOVED`, `CLUSTERDOWN`, `NOAUTH`, ...), the socket's
 * (`ECONNREFUSED`), `ETIMEDOUT` for ioredis' command timeout, `NOTREADY` for a
 * command not sent because the connection is down.
 */
export function redisErrorCode (err: unknown): string {
  if (!(err instanceof Error)) return 'ERR'
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code)) return code
  if (err.message === 'Command timed out') return 'ETIMEDOUT'
  if (/enableOfflineQueue|isn't ready|Connection is closed|Stream isn't writeable/i.test(err.message)) return 'NOTREADY'
  const word = /^([A-Z][A-Z0-9_]{2,})\b/.exec(err.message)
  return word?.[1] ?? 'ERR'
}

/** What a code means for the operator, when the fix is a setting. */
export function redisErrorHint (code: string): string | undefined {
  if (code === 'MOVED' || code === 'ASK' || code === 'CROSSSLOT') return 'this Redis is a cluster node: set REDIS_CLUSTER_NODES (redis.clusterNodes) instead of REDIS_URL'
  if (code === 'READONLY') return 'this Redis is a replica (after a failover?): use REDIS_SENTINELS and REDIS_SENTINEL_NAME to follow the master'
  if (code === 'NOAUTH' || code === 'WRONGPASS') return 'Redis refused the credentials'
  return undefined
}

export interface RedisHealthOptions {
  /** The window failures are counted over. */
  windowMs?: number
  /** Degraded from this many failed commands in the window ... */
  minFailures?: number
  /** ... when they are at least this share of the window's commands. */
  failureRatio?: number
  /** One warning at most this often. */
  warnIntervalMs?: number
  /** A rate-limited warning: what failed, how often, and a hint when the fix is a setting. */
  onWarn?: (warning: RedisWarning) => void
  now?: () => number
}

export interface RedisWarning {
  code: string
  err: Error
  /** Failed and total commands in the window (0 and 0 for a connection error). */
  failures: number
  commands: number
  hint?: string
}

export interface RedisHealth {
  /** One command's outcome: no argument for success, the error for a failure. */
  record(err?: unknown): void
  /** A connection-level error (the client's `error` event). */
  connectionError(err: Error): void
  /** Whether the window holds a high rate of failures. */
  failing(): boolean
  counts(): { failures: number, commands: number }
}

/**
 * Failed Redis commands over a sliding window (1-s buckets). A Redis that
 * answers every command with an error (READONLY after a failover, MOVED from a
 * cluster node, timeouts) is as useless as one that is down: readiness says
 * `degraded` and the log says why, at most once per interval.
 */
export function createRedisHealth (opts: RedisHealthOptions = {}): RedisHealth {
  const now = opts.now ?? Date.now
  const buckets = Math.max(1, Math.round((opts.windowMs ?? 10_000) / 1000))
  const minFailures = opts.minFailures ?? 3
  const ratio = opts.failureRatio ?? 0.1
  const warnInterval = opts.warnIntervalMs ?? 10_000
  const ok = new Array<number>(buckets).fill(0)
  const failed = new Array<number>(buckets).fill(0)
  const second = new Array<number>(buckets).fill(-1)
  let lastWarn = -Infinity

  function slot (): number {
    const s = Math.floor(now() / 1000)
    const i = s % buckets
    if (second[i] !== s) {
      second[i] = s
      ok[i] = 0
      failed[i] = 0
    }
    return i
  }

  function counts (): { failures: number, commands: number } {
    const s = Math.floor(now() / 1000)
    let failures = 0
    let commands = 0
    for (let i = 0; i < buckets; i++) {
      if (s - (second[i] ?? -1) >= buckets) continue
      failures += failed[i] ?? 0
      commands += (failed[i] ?? 0) + (ok[i] ?? 0)
    }
    return { failures, commands }
  }

  function warn (err: Error, c: { failures: number, commands: number }): void {
    const t = now()
    if (t - lastWarn < warnInterval || opts.onWarn === undefined) return
    const code = redisErrorCode(err)
    // A command not sent while disconnected: the connection's own error says why.
    if (code === 'NOTREADY') return
    lastWarn = t
    const hint = redisErrorHint(code)
    opts.onWarn({ code, err, ...c, ...(hint === undefined ? {} : { hint }) })
  }

  return {
    record (err?: unknown) {
      const i = slot()
      if (err === undefined) {
        ok[i] = (ok[i] ?? 0) + 1
        return
      }
      failed[i] = (failed[i] ?? 0) + 1
      warn(err instanceof Error ? err : new Error(String(err)), counts())
    },
    connectionError (err) {
      warn(err, { failures: 0, commands: 0 })
    },
    failing () {
      const c = counts()
      return c.failures >= minFailures && c.failures >= ratio * c.commands
    },
    counts
  }
}
