import { spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import net from 'node:net'
import t from 'tap'
import { CLI, ROOT } from '../helpers/stack.js'
import { startUpstream } from '../helpers/http.js'
import { createRedisNamespace, createTestDatabase, REDIS_URL } from '../helpers/services.js'

const PRLIMIT = ['/usr/bin/prlimit', '/bin/prlimit'].find(p => existsSync(p))
const FD_LIMIT = 200

async function until (cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise(resolve => setTimeout(resolve, 20))
}

/**
 * Descriptors run out for real: the executable under a lowered RLIMIT_NOFILE, a cap
 * above it, and more idle connections than descriptors. Load shedding stays on
 * (its sampler read memory through /proc and threw EMFILE from a timer, uncaught).
 */
t.test('the process survives descriptor exhaustion and answers once the flood ends', { skip: PRLIMIT === undefined ? 'no prlimit' : false }, async t => {
  const databaseUrl = await createTestDatabase(t)
  const upstream = await startUpstream(t)
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REDIS_KEY_PREFIX: createRedisNamespace(t),
    UPSTREAM_URL: upstream.url,
    HOST: '127.0.0.1',
    PORT: '0',
    OPS_PORT: '0',
    ADMIN_PORT: '0',
    MAX_CONNECTIONS: '100000',
    LOG_LEVEL: 'info'
  }
  const child = spawn(PRLIMIT as string, [`--nofile=${FD_LIMIT}:${FD_LIMIT}`, '--', process.execPath, CLI, 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { out += c.toString() })
  let exited: number | null | undefined
  child.on('exit', code => { exited = code })
  t.teardown(() => { if (exited === undefined) child.kill('SIGKILL') })

  await until(() => /"msg":"hg-auth-sidecar listening"/.test(out) || exited !== undefined)
  const m = /"port":(\d+)/.exec(out)
  if (m === null) throw new Error(`did not start:\n${out}`)
  const port = Number(m[1])
  const fds = (): number => readdirSync(`/proc/${child.pid ?? 0}/fd`).length

  const sockets: net.Socket[] = []
  for (let i = 0; i < FD_LIMIT * 2; i++) {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /api/status HTTP/1.1\r\nHost: x\r\n'))
    s.on('error', () => {})
    sockets.push(s)
  }
  await until(() => exited !== undefined || fds() >= FD_LIMIT - 1)
  t.equal(exited, undefined, 'alive when the descriptors ran out')
  // Two load-shedding samples (one a second) and accept() under EMFILE.
  await new Promise(resolve => setTimeout(resolve, 2500))
  t.equal(exited, undefined, `alive after the samplers ran out of descriptors${exited !== undefined ? `:\n${out.slice(-2000)}` : ''}`)
  t.notMatch(out, /uncaught error/, 'no uncaught error')

  for (const s of sockets) s.destroy()
  await until(() => exited !== undefined || fds() < FD_LIMIT / 2)
  const res = await fetch(`http://127.0.0.1:${port}/api/status`)
  t.equal(res.status, 200, 'valid requests are answered after the flood')
  t.equal(exited, undefined)
  child.kill('SIGTERM')
  await until(() => exited !== undefined)
})
