import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { request } from '../helpers/http.js'
import { spawnCli, waitFor } from '../helpers/cli-process.js'
import { ROOT, startStack } from '../helpers/stack.js'

t.test('SIGTERM: readiness turns 503 before the listener closes; the in-flight request completes; exit 0', async t => {
  const env = await startStack(t, { listen: false })
  const pat = await env.mintPat()
  await env.sidecar.close()

  let arrived: () => void = () => {}
  const inFlight = new Promise<void>(resolve => { arrived = resolve })
  env.upstream.handle = (_req, res) => {
    arrived()
    setTimeout(() => {
      res.setHeader('content-type', 'application/json')
      res.end('{"slow":true}')
    }, 1500)
  }
  const r = spawnCli(['serve'], {
    cwd: ROOT,
    env: { ...env.cliEnv(), UPSTREAM_URL: env.upstream.url, HOST: '127.0.0.1', PORT: '0', OPS_PORT: '0', ADMIN_PORT: '0', LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '10000' }
  })
  const child = r.child
  t.teardown(() => child.kill('SIGKILL'))
  const ports = await waitFor(r, /proxy\s+http:\/\/127\.0\.0\.1:(\d+)[\s\S]*ops\s+http:\/\/127\.0\.0\.1:(\d+)/, 30_000)
  const port = Number(ports[1])
  const opsPort = Number(ports[2])
  t.equal((await request(opsPort, '/readyz')).statusCode, 200)

  const slow = request(port, '/api/scans', { headers: { 'x-api-key': pat.token } })
  await inFlight
  child.kill('SIGTERM')
  let ready = await request(opsPort, '/readyz')
  for (let i = 0; i < 20 && ready.statusCode === 200; i++) {
    await sleep(25)
    ready = await request(opsPort, '/readyz')
  }
  t.equal(ready.statusCode, 503, 'not ready while draining')
  t.equal(ready.json().status, 'unavailable')
  t.equal((await request(opsPort, '/healthz')).statusCode, 200, 'still alive while draining')
  const fresh = await new Promise<string>(resolve => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api/scans', agent: false }, res => resolve(String(res.statusCode)))
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
  t.ok(fresh === 'ECONNREFUSED' || fresh === '503' || fresh === 'ECONNRESET', `a new request while draining is not served: ${fresh}`)

  const res = await slow
  t.equal(res.statusCode, 200, 'the in-flight request completed')
  t.same(res.json(), { slow: true })
  t.equal(await r.exited, 0, 'exit 0')
  t.match(r.out(), /shut down cleanly/)
})

t.test('load shedding: 503 with Retry-After when the event loop is held beyond the threshold', async t => {
  const env = await startStack(t, { config: { server: { overload: { maxEventLoopDelayMs: 5, maxEventLoopUtilization: 0, maxHeapUsedBytes: 0, maxRssBytes: 0 } } } })
  const pat = await env.mintPat()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  let res = await env.get('/api/scans', pat.token)
  for (let i = 0; i < 30 && res.statusCode !== 503; i++) {
    const until = Date.now() + 120
    while (Date.now() < until) { /* hold the event loop */ }
    await sleep(30)
    res = await env.get('/api/scans', pat.token)
  }
  t.equal(res.statusCode, 503)
  t.same(res.json(), { error: 'unavailable', message: 'The sidecar is overloaded; retry shortly' })
  t.ok(Number(res.headers['retry-after']) >= 1)
})
