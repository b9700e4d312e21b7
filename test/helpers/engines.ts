import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { accessSync, chownSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { ADMIN_DATABASE_URL } from './services.js'

/**
 * Real PgBouncer, redis-server and redis-sentinel processes on loopback, from
 * the Debian packages `.ci/run` installs. Missing binaries skip a test locally
 * (`skipUnless`) and fail it under CI, where they must be there.
 */

interface Teardown {
  teardown(fn: () => unknown): void
}

const children = new Set<ChildProcess>()
// A test that dies must not leave servers behind on the shared machine.
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })

export function findBinary (name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/bin']
  for (const dir of dirs) {
    if (dir === '') continue
    const file = join(dir, name)
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {}
  }
  return null
}

/** A tap `skip` value: false when every binary is there; a reason (or, under CI, a throw) otherwise. */
export function skipUnless (...names: string[]): string | false {
  const missing = names.filter(n => findBinary(n) === null)
  if (missing.length === 0) return false
  const reason = `${missing.join(', ')} not installed (Debian: apt-get install -y pgbouncer redis-server redis-sentinel)`
  if (process.env.CI === 'true') throw new Error(`${reason}; .ci/run installs them`)
  return reason
}

export async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address() as net.AddressInfo
  await new Promise(resolve => server.close(resolve))
  return port
}

export interface Engine {
  port: number
  child: ChildProcess
  output(): string
  /** SIGKILL: the server vanishes as a crashed node would. */
  kill(): Promise<void>
  stop(): Promise<void>
}

function workDir (t: Teardown, kind: string): string {
  const dir = mkdtempSync(join(tmpdir(), `hg-${kind}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function waitPort (port: number, child: ChildProcess, output: () => string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${output()}`)
    const ok = await new Promise<boolean>(resolve => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`nothing listens on ${port}:\n${output()}`)
}

function launch (t: Teardown, cmd: string, args: string[], port: number, opts: { uid?: number, gid?: number, cwd?: string } = {}): Engine {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
  children.add(child)
  let out = ''
  const keep = (c: Buffer): void => { out = (out + c.toString()).slice(-20_000) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = new Promise<void>(resolve => child.once('exit', () => { children.delete(child); resolve() }))
  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig)
    await exited
  }
  const engine: Engine = {
    port,
    child,
    output: () => out,
    kill: () => signal('SIGKILL'),
    stop: async () => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await signal('SIGTERM')
      clearTimeout(timer)
    }
  }
  t.teardown(() => engine.stop())
  return engine
}

// --- PgBouncer ---------------------------------------------------------------

export interface PgBouncer extends Engine {
  /** The test database's URL with PgBouncer's port in place of PostgreSQL's. */
  url(databaseUrl: string): string
  version: string
}

export interface PgBouncerOptions {
  poolMode?: 'session' | 'transaction' | 'statement'
  defaultPoolSize?: number
  maxClientConn?: number
  /** PgBouncer refuses every other startup parameter a client sends. */
  ignoreStartupParameters?: string[]
}

/** PgBouncer refuses to run as root; the tests then run it as the postgres (or nobody) user. */
function unprivileged (): { uid: number, gid: number } | null {
  if (process.getuid?.() !== 0) return null
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n').map(l => l.split(':'))
  const row = passwd.find(p => p[0] === 'postgres') ?? passwd.find(p => p[0] === 'nobody')
  if (row === undefined) throw new Error('no unprivileged user to run pgbouncer as')
  return { uid: Number(row[2]), gid: Number(row[3]) }
}

export function pgBouncerVersion (): string {
  const bin = findBinary('pgbouncer')
  if (bin === null) return 'none'
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' })
  return /PgBouncer (\S+)/.exec(r.stdout)?.[1] ?? 'unknown'
}

export async function startPgBouncer (t: Teardown, opts: PgBouncerOptions = {}): Promise<PgBouncer> {
  const bin = findBinary('pgbouncer')
  if (bin === null) throw new Error('pgbouncer is not installed')
  const server = new URL(ADMIN_DATABASE_URL)
  const dir = workDir(t, 'pgbouncer')
  const port = await freePort()
  const user = decodeURIComponent(server.username || 'postgres')
  writeFileSync(join(dir, 'users.txt'), `"${user}" ""\n`)
  writeFileSync(join(dir, 'pgbouncer.ini'), [
    '[databases]',
    `* = host=${server.hostname} port=${server.port || '5432'}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${join(dir, 'users.txt')}`,
    `pool_mode = ${opts.poolMode ?? 'transaction'}`,
    `default_pool_size = ${opts.defaultPoolSize ?? 4}`,
    `max_client_conn = ${opts.maxClientConn ?? 200}`,
    `ignore_startup_parameters = ${(opts.ignoreStartupParameters ?? ['extra_float_digits']).join(',')}`,
    'server_login_retry = 1',
    'log_connections = 0',
    'log_disconnections = 0',
    ''
  ].join('\n'))
  const ids = unprivileged()
  if (ids !== null) chownSync(dir, ids.uid, ids.gid)
  const engine = launch(t, bin, [join(dir, 'pgbouncer.ini')], port, ids ?? {})
  await waitPort(port, engine.child, engine.output)
  return {
    ...engine,
    version: pgBouncerVersion(),
    url (databaseUrl) {
      const u = new URL(databaseUrl)
      u.host = `127.0.0.1:${port}`
      return u.toString()
    }
  }
}

// --- Redis -------------------------------------------------------------------

async function redisPing (port: number, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    r.on('error', () => {})
    try {
      await r.connect()
      if (await r.ping() === 'PONG') return
    } catch {
    } finally {
      r.disconnect()
    }
    await sleep(50)
  }
  throw new Error(`redis on ${port} does not answer`)
}

export async function startRedisServer (t: Teardown, extra: string[] = []): Promise<Engine> {
  const bin = findBinary('redis-server')
  if (bin === null) throw new Error('redis-server is not installed')
  const dir = workDir(t, 'redis')
  const port = await freePort()
  const engine = launch(t, bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra], port, { cwd: dir })
  await waitPort(port, engine.child, engine.output)
  await redisPing(port)
  return engine
}

export interface RedisCluster {
  nodes: Engine[]
  /** `host:port` of every master, as REDIS_CLUSTER_NODES takes them. */
  addresses: string[]
}

/** Three masters, no replicas: every slot is covered, keys spread over all three. */
export async function startRedisCluster (t: Teardown, masters = 3): Promise<RedisCluster> {
  const cli = findBinary('redis-cli')
  if (cli === null) throw new Error('redis-cli is not installed')
  const nodes: Engine[] = []
  for (let i = 0; i < masters; i++) {
    const busPort = await freePort()
    nodes.push(await startRedisServer(t, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(busPort), '--cluster-node-timeout', '2000']))
  }
  const addresses = nodes.map(n => `127.0.0.1:${n.port}`)
  const r = spawnSync(cli, ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 })
  if (r.status !== 0) throw new Error(`redis-cli --cluster create failed: ${r.stdout}${r.stderr}`)
  const end = Date.now() + 20_000
  for (const n of nodes) {
    for (;;) {
      const info = spawnSync(cli, ['-p', String(n.port), 'cluster', 'info'], { encoding: 'utf8' }).stdout
      if (info.includes('cluster_state:ok')) break
      if (Date.now() > end) throw new Error(`cluster not ok on ${n.port}: ${info}`)
      await sleep(100)
    }
  }
  return { nodes, addresses }
}

export interface RedisSentinelSet {
  name: string
  master: Engine
  replica: Engine
  sentinels: Engine[]
  /** `host:port` of every sentinel, as REDIS_SENTINELS takes them. */
  addresses: string[]
  /** The port of the master the sentinels report now. */
  masterPort(): Promise<number>
}

/** A master, one replica and three sentinels (quorum 2) that fail over within a few seconds. */
export async function startRedisSentinel (t: Teardown, name = 'hgmaster'): Promise<RedisSentinelSet> {
  const bin = findBinary('redis-sentinel')
  if (bin === null) throw new Error('redis-sentinel is not installed')
  const master = await startRedisServer(t)
  const replica = await startRedisServer(t, ['--replicaof', '127.0.0.1', String(master.port)])
  const end = Date.now() + 15_000
  const probe = new Redis({ host: '127.0.0.1', port: replica.port, maxRetriesPerRequest: 1 })
  try {
    while (!(await probe.info('replication')).includes('master_link_status:up')) {
      if (Date.now() > end) throw new Error('replica never synced')
      await sleep(100)
    }
  } finally {
    probe.disconnect()
  }
  const sentinels: Engine[] = []
  for (let i = 0; i < 3; i++) {
    const dir = workDir(t, 'sentinel')
    const port = await freePort()
    const file = join(dir, 'sentinel.conf')
    writeFileSync(file, [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      `sentinel parallel-syncs ${name} 1`,
      ''
    ].join('\n'))
    const s = launch(t, bin, [file], port, { cwd: dir })
    await waitPort(port, s.child, s.output)
    sentinels.push(s)
  }
  const set: RedisSentinelSet = {
    name,
    master,
    replica,
    sentinels,
    addresses: sentinels.map(s => `127.0.0.1:${s.port}`),
    async masterPort () {
      for (const s of sentinels) {
        if (s.child.exitCode !== null) continue
        const r = new Redis({ host: '127.0.0.1', port: s.port, maxRetriesPerRequest: 0, retryStrategy: () => null })
        r.on('error', () => {})
        try {
          const addr = await r.call('SENTINEL', 'get-master-addr-by-name', name) as [string, string] | null
          if (addr !== null) return Number(addr[1])
        } catch {
        } finally {
          r.disconnect()
        }
      }
      throw new Error('no sentinel answers')
    }
  }
  // The sentinels must have found each other and the replica before a failover can be voted.
  const ready = Date.now() + 20_000
  for (;;) {
    const r = new Redis({ host: '127.0.0.1', port: sentinels[0]?.port ?? 0, maxRetriesPerRequest: 0 })
    r.on('error', () => {})
    try {
      const info = await r.call('SENTINEL', 'master', name) as string[]
      const field = (k: string): number => Number(info[info.indexOf(k) + 1])
      if (field('num-other-sentinels') >= 2 && field('num-slaves') >= 1) break
    } catch {
    } finally {
      r.disconnect()
    }
    if (Date.now() > ready) throw new Error('sentinels never saw each other and the replica')
    await sleep(200)
  }
  return set
}
