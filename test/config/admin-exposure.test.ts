import t from 'tap'
import { createSidecar } from '../../src/app.js'
import { checkAdminExposure, ConfigError, isLoopback, loadConfig } from '../../src/config/load.js'
import { runCli, startStack } from '../helpers/stack.js'

/** docs/DESIGN.md §2.1, issue 17 item 12: no admin port beyond loopback without ADMIN_TOKEN. */

const TOKEN = 'test-admin-token-not-a-secret-0002'

t.test('loopback addresses', async t => {
  for (const h of ['127.0.0.1', '127.8.9.10', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) t.ok(isLoopback(h), h)
  for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', '::ffff:10.0.0.1', '1::1', 'sidecar.internal', '128.0.0.1', '0']) t.notOk(isLoopback(h), h)
})

t.test('a non-loopback ADMIN_HOST without ADMIN_TOKEN is refused, naming both keys', async t => {
  for (const host of ['0.0.0.0', '::', '10.0.0.5', 'admin.example']) {
    const cfg = loadConfig({ env: { ADMIN_HOST: host } })
    t.throws(() => checkAdminExposure(cfg), { name: 'ConfigError', message: /adminToken \(ADMIN_TOKEN\): required when server\.adminHost \(ADMIN_HOST\) is not a loopback address/ }, host)
    t.doesNotThrow(() => checkAdminExposure(loadConfig({ env: { ADMIN_HOST: host, ADMIN_TOKEN: TOKEN } })), `${host} with a token`)
  }
  t.doesNotThrow(() => checkAdminExposure(loadConfig()), 'the default, 127.0.0.1, without a token')
})

t.test('createSidecar refuses before opening anything', async t => {
  const cfg = loadConfig({ env: { ADMIN_HOST: '0.0.0.0', DATABASE_URL: 'postgres://127.0.0.1:1/none', UPSTREAM_URL: 'http://127.0.0.1:1' } })
  await t.rejects(createSidecar(cfg), ConfigError)
  const env = await startStack(t, { listen: false, config: { server: { adminHost: '0.0.0.0' }, adminToken: TOKEN } })
  t.equal(env.config.server.adminHost, '0.0.0.0', 'with ADMIN_TOKEN it builds')
})

t.test('hg-sidecar serve exits with the reason on stderr', async t => {
  // NODE_ENV=production: were the check missing, serve would stop at UPSTREAM_URL instead of starting anything.
  const res = await runCli(['serve'], { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'production', ADMIN_HOST: '0.0.0.0', PORT: '0', OPS_PORT: '0', ADMIN_PORT: '0', LOG_LEVEL: 'warn' })
  t.equal(res.code, 2, res.stderr)
  t.match(res.stderr, /ADMIN_TOKEN.*ADMIN_HOST.*"0\.0\.0\.0"/)
})
