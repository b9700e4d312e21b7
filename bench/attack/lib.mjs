// Shared by the attack scripts: a plain upstream, a fresh database, and the
// sidecar executable (dist/) with the DEFAULT config in a child process, so
// that its descriptors, event loop and death are its own.
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import pg from 'pg'

const ROOT = new URL('../../', import.meta.url)
const CLI = new URL('dist/cli/bin.cjs', ROOT).pathname
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'

async function admin (sql) {
  const c = new pg.Client({ connectionString: ADMIN_URL })
  await c.connect()
  try { return await c.query(sql) } finally { await c.end() }
}

/** An origin that drains each body, then answers a small JSON. */
export async function startUpstream () {
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => res.end('{"ok":true}'))
  })
  server.keepAliveTimeout = 60_000
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => { server.closeAllConnections(); server.close() } }
}

/** The sidecar with config/default.yaml; only the backends and ports come from the environment. */
export async function startSidecar ({ upstreamUrl, env: extra = {} }) {
  const ports = [await freePort(), await freePort(), await freePort()]
  const db = `hg_attack_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`
  await admin(`CREATE DATABASE ${db}`)
  const u = new URL(ADMIN_URL)
  u.pathname = `/${db}`
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: u.toString(),
    REDIS_URL,
    REDIS_KEY_PREFIX: `${db}:`,
    UPSTREAM_URL: upstreamUrl,
    HOST: '127.0.0.1',
    PORT: String(ports[0]),
    OPS_PORT: String(ports[1]),
    ADMIN_PORT: String(ports[2]),
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production',
    ...extra
  }
  const child = spawn(process.execPath, [CLI, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', c => { out += c })
  child.stderr.on('data', c => { out += c })
  let exit = null
  child.on('exit', (code, signal) => { exit = { code, signal } })
  // The listeners are up once each port takes a connection.
  for (const port of ports) {
    while (!await canConnect(port)) {
      if (exit !== null) throw new Error(`sidecar exited:\n${out}`)
      await sleep(200)
    }
  }
  return {
    child,
    ports,
    out: () => out,
    exit: () => exit,
    fds: () => { try { return readdirSync(`/proc/${child.pid}/fd`).length } catch { return null } },
    async close () {
      if (exit === null) {
        child.kill('SIGTERM')
        await new Promise(resolve => child.once('exit', resolve))
      }
      await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`)
    }
  }
}

function freePort () {
  return new Promise(resolve => {
    const srv = net.createServer()
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)) })
  })
}

function canConnect (port) {
  return new Promise(resolve => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
    s.on('error', () => resolve(false))
  })
}

/** One request; resolves with { ms, status } or { ms, error }. */
export function timedRequest (port, { method = 'GET', path = '/api/status', body } = {}) {
  const t0 = performance.now()
  return new Promise(resolve => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false, timeout: 60_000 }, res => {
      res.resume()
      res.on('end', () => resolve({ ms: performance.now() - t0, status: res.statusCode }))
    })
    req.on('timeout', () => req.destroy(new Error('client timeout')))
    req.on('error', err => resolve({ ms: performance.now() - t0, error: err.code ?? err.message }))
    req.end(body)
  })
}

export function summarize (results) {
  const ok = results.filter(r => r.status !== undefined && r.status < 500)
  const ms = ok.map(r => r.ms).sort((a, b) => a - b)
  const q = p => ms.length === 0 ? null : Math.round(ms[Math.min(ms.length - 1, Math.floor(p * ms.length))])
  const errors = {}
  for (const r of results) if (r.error !== undefined || r.status >= 500) { const k = r.error ?? String(r.status); errors[k] = (errors[k] ?? 0) + 1 }
  return { requests: results.length, answered: ok.length, p50ms: q(0.5), p99ms: q(0.99), maxms: ms.length ? Math.round(ms[ms.length - 1]) : null, errors }
}

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
