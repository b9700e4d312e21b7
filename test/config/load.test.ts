import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config/load.js'
import { ENV_KEYS } from '../../src/config/schema.js'
import { runCli } from '../helpers/stack.js'

t.test('defaults load and env overrides apply', async t => {
  const c = loadConfig({ env: { PORT: '8181', REDIS_KEY_PREFIX: 'x:', TRUST_PROXY: 'true', UPSTREAM_URL: 'http://127.0.0.1:3000' } })
  t.equal(c.server.port, 8181)
  t.equal(c.server.opsPort, 9090)
  t.equal(c.server.adminPort, 9091)
  t.equal(c.server.adminHost, '127.0.0.1')
  t.equal(c.upstream.timeoutMs, 30000)
  t.equal(c.redis.keyPrefix, 'x:')
  t.equal(c.server.trustProxy, true)
  t.equal(c.auth.bcryptCost, 10)
  t.equal(c.auth.memoTtlSeconds, 3600)
})

t.test('a bad value names its key', async t => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'abc' }, /^PORT: expected an integer/],
    [{ PORT: '70000' }, /server\.port \(PORT\)/],
    [{ UPSTREAM_URL: 'ftp://x' }, /upstream\.url \(UPSTREAM_URL\)/],
    [{ LOG_LEVEL: 'loud' }, /logLevel \(LOG_LEVEL\)/],
    [{ BCRYPT_COST: '3' }, /auth\.bcryptCost \(BCRYPT_COST\)/],
    [{ DATABASE_URL: 'mysql://u:secretpw@h/db' }, /database\.url \(DATABASE_URL\)/],
    [{ MIGRATE_ON_START: 'maybe' }, /^MIGRATE_ON_START: expected true or false/]
  ]
  for (const [env, re] of cases) {
    t.throws(() => loadConfig({ env }), re, JSON.stringify(env))
  }
  const err = (() => { try { loadConfig({ env: { DATABASE_URL: 'mysql://u:secretpw@h/db' } }) } catch (e) { return e as Error } })()
  t.ok(err instanceof ConfigError)
  t.notMatch(err?.message ?? '', /secretpw/, 'secret-bearing values are not echoed')
})

t.test('config file: merged over the defaults, bad keys named', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'hg-cfg-'))
  const good = join(dir, 'good.yaml')
  writeFileSync(good, 'defaultDeny: true\nroutes:\n  - prefix: /x\n    rules:\n      - { methods: [GET], permission: scans:read }\n')
  const c = loadConfig({ env: { CONFIG_FILE: good } })
  t.equal(c.defaultDeny, true)
  t.equal(c.routes.length, 1)
  t.equal(c.roles.length, 4, 'roles still from the defaults')

  const bad: Array<[string, RegExp]> = [
    ['routes:\n  - prefix: x\n', /routes\[0\]\.prefix/],
    ['routes:\n  - prefix: /x\n    rules: [{ permission: nope:nope }]\n', /routes\[0\]\.rules\[0\]\.permission: nope:nope is not granted/],
    ['auth:\n  apiKeys: maybe\n', /auth\.apiKeys/],
    ['unknownKey: 1\n', /unknownKey|top level/],
    ['tokens:\n  defaultLifetimeDays: 400\n', /tokens\.defaultLifetimeDays/],
    [': : :\n', /not valid YAML/],
    ['roles:\n  - { name: a, permissions: [] }\n  - { name: a, permissions: [] }\n', /duplicate role/]
  ]
  for (const [i, [text, re]] of bad.entries()) {
    const f = join(dir, `bad${i}.yaml`)
    writeFileSync(f, text)
    t.throws(() => loadConfig({ env: { CONFIG_FILE: f } }), re, text)
  }
  t.throws(() => loadConfig({ env: { CONFIG_FILE: join(dir, 'missing.yaml') } }), /CONFIG_FILE: cannot read/)
})

t.test('the CLI exits non-zero naming the bad key', async t => {
  const res = await runCli(['serve'], { PATH: process.env.PATH, PORT: 'eighty' })
  t.equal(res.code, 2)
  t.match(res.stderr, /PORT/)
})

t.test('every environment variable is documented in the README', async t => {
  const { readFileSync } = await import('node:fs')
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  for (const name of [...Object.keys(ENV_KEYS), 'CONFIG_FILE']) t.match(readme, `\`${name}\``, name)
})

t.test('assertion: off by default, env overrides, the bad key named', async t => {
  const d = loadConfig({ env: {} }).assertion
  t.same(d, { enabled: false, issuer: 'hg-auth-sidecar', audience: null, ttlSeconds: 300, keyFile: null, cacheMaxEntries: 10000 })
  const c = loadConfig({ env: { ASSERTION_ENABLED: 'true', ASSERTION_AUDIENCE: 'scan-api', ASSERTION_KEY_FILE: '/etc/hg-sidecar/assertion/keys.json' } }).assertion
  t.match(c, { enabled: true, audience: 'scan-api', keyFile: '/etc/hg-sidecar/assertion/keys.json' })

  const cases: Array<[Parameters<typeof loadConfig>[0], RegExp]> = [
    [{ env: { ASSERTION_ENABLED: 'true' } }, /^invalid config: assertion\.audience \(ASSERTION_AUDIENCE\): required when assertion\.enabled/],
    [{ env: { ASSERTION_ENABLED: 'sure' } }, /^ASSERTION_ENABLED: expected true or false/],
    [{ overrides: { assertion: { ttlSeconds: 301 } } }, /^invalid config: assertion\.ttlSeconds: .*300/],
    [{ overrides: { assertion: { ttlSeconds: 0 } } }, /^invalid config: assertion\.ttlSeconds/],
    [{ overrides: { assertion: { issuer: '' } } }, /^invalid config: assertion\.issuer/],
    [{ overrides: { assertion: { cacheMaxEntries: 0 } } }, /^invalid config: assertion\.cacheMaxEntries/]
  ]
  for (const [opts, re] of cases) t.throws(() => loadConfig(opts), re, JSON.stringify(opts))
})
