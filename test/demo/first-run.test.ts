import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { request } from '../helpers/http.js'
import { spawnCli, stop, waitFor, type Running } from '../helpers/cli-process.js'
import { rememberSecret } from '../helpers/stack.js'

function start (cwd: string, args: string[] = [], extraEnv: Record<string, string> = {}): Running {
  return spawnCli(args, {
    cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, HOST: '127.0.0.1', PORT: '0', OPS_PORT: '0', BCRYPT_COST: '4', LOG_LEVEL: 'warn', ...extraEnv }
  })
}

t.test('first run with nothing configured: embedded database, demo upstream, a printed demo token', async t => {
  const cwd = mkdtempSync(join(tmpdir(), 'hg-first-run-'))
  t.teardown(() => rmSync(cwd, { recursive: true, force: true }))

  const first = start(cwd)
  t.teardown(() => first.child.kill('SIGKILL'))
  const m = await waitFor(first, /curl -s -H 'X-API-Key: (hg_pat_[0-9a-f]{48})' (http:\/\/127\.0\.0\.1:(\d+))\/api\/scans/)
  const token = m[1] as string
  rememberSecret(token)
  const port = Number(m[3])
  t.match(first.out(), /EMBEDDED PostgreSQL \(PGlite\)/, 'the banner says which backends are in use')
  t.match(first.out(), /in-process prefix cache/)
  t.match(first.out(), /built-in demo upstream/)

  const res = await request(port, '/api/scans', { headers: { 'x-api-key': token, 'x-hg-role': 'owner' } })
  t.equal(res.statusCode, 200)
  const echoed = res.json<{ headers: Record<string, string>, credentialForwarded: boolean }>()
  t.equal(echoed.headers['x-hg-auth-type'], 'pat')
  t.equal(echoed.headers['x-hg-role'], 'admin')
  t.equal(echoed.headers['x-hg-credential-prefix'], token.slice(0, 10))
  t.equal(echoed.credentialForwarded, false)
  t.equal((await request(port, '/api/scans')).statusCode, 401)
  t.equal(await stop(first), 0, 'SIGTERM: clean exit')
  t.ok(existsSync(join(cwd, '.data')), 'data under ./.data')
  t.notOk(existsSync(join(cwd, '.data', 'hg-sidecar.pid')), 'lock released')

  const second = start(cwd)
  t.teardown(() => second.child.kill('SIGKILL'))
  const m2 = await waitFor(second, /proxy\s+(http:\/\/127\.0\.0\.1:(\d+))/)
  await waitFor(second, /Data reused/)
  t.notMatch(second.out(), /hg_pat_[0-9a-f]{48}/, 'no token printed on the second start')
  t.match(second.out(), /hg-sidecar demo/, 'says how to mint a new demo token')
  const again = await request(Number(m2[2]), '/api/scans', { headers: { 'x-api-key': token } })
  t.equal(again.statusCode, 200, `the first token still works after a restart: ${again.text}`)
  t.equal(await stop(second), 0)
})

t.test('NODE_ENV=production without DATABASE_URL refuses to start, naming DATABASE_URL', async t => {
  const cwd = mkdtempSync(join(tmpdir(), 'hg-prod-'))
  t.teardown(() => rmSync(cwd, { recursive: true, force: true }))
  const r = start(cwd, [], { NODE_ENV: 'production', UPSTREAM_URL: 'http://127.0.0.1:1' })
  const code = await r.exited
  t.not(code, 0)
  t.match(r.out(), /DATABASE_URL is required when NODE_ENV=production/)
  t.same(readdirSync(cwd), [], 'nothing created')
})

t.test('demo --ephemeral: a fresh token every time, data in a temp dir removed on exit', async t => {
  const cwd = mkdtempSync(join(tmpdir(), 'hg-demo-'))
  t.teardown(() => rmSync(cwd, { recursive: true, force: true }))
  const r = start(cwd, ['demo', '--ephemeral'])
  t.teardown(() => r.child.kill('SIGKILL'))
  const m = await waitFor(r, /curl -s -H 'X-API-Key: (hg_pat_[0-9a-f]{48})' http:\/\/127\.0\.0\.1:(\d+)/)
  rememberSecret(m[1] as string)
  const dir = /EMBEDDED PostgreSQL \(PGlite\) in (\S+):/.exec(r.out())?.[1]
  t.ok(dir !== undefined && dir.startsWith(tmpdir()))
  const res = await request(Number(m[2]), '/api/scans', { headers: { 'x-api-key': m[1] as string } })
  t.equal(res.statusCode, 200, res.text)
  t.equal(await stop(r), 0)
  t.notOk(existsSync(dir ?? ''), 'temp data removed')
  t.same(readdirSync(cwd), [], 'nothing left in the working directory')
})
