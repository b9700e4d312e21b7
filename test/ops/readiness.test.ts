import { createServer, type Server } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createUpstreamCheck } from '../../src/ops/upstream-check.js'
import { request } from '../helpers/http.js'
import { startStack, type Stack } from '../helpers/stack.js'

async function listen (t: { teardown(fn: () => unknown): void }): Promise<{ server: Server, port: number, connections: () => number }> {
  let n = 0
  const server = createServer(socket => { n++; socket.destroy() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  return { server, port: (server.address() as { port: number }).port, connections: () => n }
}

/** A loopback port with nothing listening on it (bound, then released). */
async function closedPort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

t.test('upstream check: a TCP connect, cached, shared by concurrent callers', async t => {
  const up = await listen(t)
  let now = 1_000
  const check = createUpstreamCheck({ url: `http://127.0.0.1:${up.port}/base`, now: () => now })
  t.same(await Promise.all([check.status(), check.status(), check.status()]), ['ok', 'ok', 'ok'])
  for (let i = 0; i < 20 && up.connections() === 0; i++) await sleep(10)
  t.equal(up.connections(), 1, 'three concurrent callers, one connection')
  now += 999
  t.equal(await check.status(), 'ok')
  t.equal(up.connections(), 1, 'within the cache time: no new connection')
  now += 1
  t.equal(await check.status(), 'ok')
  for (let i = 0; i < 20 && up.connections() === 1; i++) await sleep(10)
  t.equal(up.connections(), 2, 'after it: checked again')

  const refused = createUpstreamCheck({ url: `http://127.0.0.1:${await closedPort()}` })
  t.equal(await refused.status(), 'down', 'nothing listening: down')
  const v6 = createUpstreamCheck({ url: `http://[::1]:${await closedPort()}` })
  t.equal(await v6.status(), 'down', 'an IPv6 literal is connected to without its brackets')
})

async function readyz (env: Stack): Promise<{ code: number, body: Record<string, string> }> {
  const res = await request(env.opsPort, '/readyz')
  return { code: res.statusCode, body: res.json<Record<string, string>>() }
}

t.test('/readyz with upstream.readinessCheck: 503 and "upstream": "down" while the upstream does not listen', async t => {
  const env = await startStack(t, { config: { upstream: { readinessCheck: true } } })
  t.same(await readyz(env), { code: 200, body: { status: 'ok', postgres: 'ok', redis: 'ok', upstream: 'ok' } })
  await env.upstream.close()
  let r = await readyz(env)
  // The last answer is kept for a second; a bounded wait for the next look.
  for (let i = 0; i < 50 && r.code === 200; i++) {
    await sleep(100)
    r = await readyz(env)
  }
  t.same(r, { code: 503, body: { status: 'unavailable', postgres: 'ok', redis: 'ok', upstream: 'down', reason: 'upstream not reachable' } })
  t.equal((await request(env.opsPort, '/healthz')).statusCode, 200, 'liveness does not depend on the upstream')
})

t.test('/readyz without the check (the default): the upstream does not matter', async t => {
  const env = await startStack(t)
  t.equal(env.config.upstream.readinessCheck, false, 'off by default')
  await env.upstream.close()
  await sleep(1100)
  t.same(await readyz(env), { code: 200, body: { status: 'ok', postgres: 'ok', redis: 'ok' } })
})
