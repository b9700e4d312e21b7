import t from 'tap'
import { loadConfig } from '../../src/config/load.js'
import { createRedisHealth, parseHostPort, redisErrorCode, redisTopology, type RedisWarning } from '../../src/store/redis.js'

const replyError = (message: string): Error => Object.assign(new Error(message), { name: 'ReplyError' })

t.test('error codes: what the log and the hint key on', async t => {
  const cases: Array<[unknown, string]> = [
    [replyError('MOVED 3999 127.0.0.1:7002'), 'MOVED'],
    [replyError("READONLY You can't write against a read only replica."), 'READONLY'],
    [replyError('CLUSTERDOWN The cluster is down'), 'CLUSTERDOWN'],
    [replyError('NOAUTH Authentication required.'), 'NOAUTH'],
    [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'ECONNREFUSED'],
    [new Error('Command timed out'), 'ETIMEDOUT'],
    [new Error("Stream isn't writeable and enableOfflineQueue options is false"), 'NOTREADY'],
    [new Error('something else'), 'ERR'],
    ['not an error', 'ERR']
  ]
  for (const [err, code] of cases) t.equal(redisErrorCode(err), code, String(err))
})

t.test('failure window: degraded on a high share of failed commands, back once they roll out', async t => {
  let now = 1_000_000
  const warnings: RedisWarning[] = []
  const h = createRedisHealth({ now: () => now, onWarn: w => warnings.push(w) })
  for (let i = 0; i < 50; i++) h.record()
  t.notOk(h.failing(), 'all fine')
  h.record(replyError('MOVED 1 127.0.0.1:7000'))
  h.record(replyError('MOVED 2 127.0.0.1:7000'))
  t.notOk(h.failing(), 'two failures are noise')
  h.record(replyError('MOVED 3 127.0.0.1:7000'))
  t.notOk(h.failing(), '3 of 53 is under 10 %')
  for (let i = 0; i < 3; i++) h.record(replyError('MOVED 4 127.0.0.1:7000'))
  t.ok(h.failing(), '6 of 56 is over 10 %')
  t.same(h.counts(), { failures: 6, commands: 56 })
  t.equal(warnings.length, 1, 'one warning per interval')
  t.equal(warnings[0]?.code, 'MOVED')
  t.match(warnings[0]?.hint ?? '', /REDIS_CLUSTER_NODES/)

  now += 5000
  t.ok(h.failing(), 'still within the window')
  now += 5000
  t.notOk(h.failing(), 'rolled out after 10 s')
  t.same(h.counts(), { failures: 0, commands: 0 })

  for (let i = 0; i < 5; i++) h.record(replyError("READONLY You can't write against a read only replica."))
  t.equal(warnings.length, 2, 'a new warning after the interval')
  t.equal(warnings[1]?.code, 'READONLY')
  t.match(warnings[1]?.err.message ?? '', /^READONLY/, 'the real error, not [object Object]')
})

t.test('a command skipped while disconnected counts but does not warn (the connection error does)', async t => {
  const warnings: RedisWarning[] = []
  const h = createRedisHealth({ onWarn: w => warnings.push(w) })
  for (let i = 0; i < 5; i++) h.record(Object.assign(new Error('Redis is not connected'), { code: 'NOTREADY' }))
  t.ok(h.failing())
  t.equal(warnings.length, 0)
  h.connectionError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))
  t.equal(warnings[0]?.code, 'ECONNREFUSED')
})

t.test('topology from the config; host:port lists from the environment', async t => {
  const base = { UPSTREAM_URL: 'http://127.0.0.1:3000' }
  t.equal(redisTopology(loadConfig({ env: base }).redis), null)
  t.equal(redisTopology(loadConfig({ env: { ...base, REDIS_URL: 'redis://127.0.0.1:6379' } }).redis), 'standalone')
  const s = loadConfig({ env: { ...base, REDIS_SENTINELS: '10.0.0.1:26379, [::1]:26380,sentinel-2.redis:26379', REDIS_SENTINEL_NAME: 'mymaster' } }).redis
  t.equal(redisTopology(s), 'sentinel')
  t.same(s.sentinels.map(parseHostPort), [{ host: '10.0.0.1', port: 26379 }, { host: '::1', port: 26380 }, { host: 'sentinel-2.redis', port: 26379 }])
  const c = loadConfig({ env: { ...base, REDIS_CLUSTER_NODES: 'redis-0:6379,redis-1:6379' } }).redis
  t.equal(redisTopology(c), 'cluster')
  t.same(c.clusterNodes, ['redis-0:6379', 'redis-1:6379'])
})

t.test('Redis settings that cannot work are refused at start, naming the key', async t => {
  const base = { UPSTREAM_URL: 'http://127.0.0.1:3000' }
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ REDIS_URL: 'redis://a:6379', REDIS_CLUSTER_NODES: 'b:6379' }, /redis\.url \(REDIS_URL\) and redis\.clusterNodes \(REDIS_CLUSTER_NODES\): set one Redis topology/],
    [{ REDIS_SENTINELS: 'a:26379' }, /redis\.sentinelName \(REDIS_SENTINEL_NAME\): required/],
    [{ REDIS_SENTINELS: 'a', REDIS_SENTINEL_NAME: 'm' }, /redis\.sentinels\/0|redis\.sentinels\[0\]/],
    [{ REDIS_URL: 'redis+sentinel://u:hunter2@a:26379/mymaster' }, /REDIS_SENTINELS=host:port/],
    [{ REDIS_TLS_CERT_FILE: '/x.pem' }, /certFile and keyFile/],
    [{ DATABASE_POOLER: 'session' }, /database\.pooler \(DATABASE_POOLER\)/],
    [{ MIGRATE_DATABASE_URL: 'mysql://u:hunter2@h/db' }, /database\.migrateUrl \(MIGRATE_DATABASE_URL\)/]
  ]
  for (const [env, re] of cases) {
    const err = (() => { try { loadConfig({ env: { ...base, ...env } }) } catch (e) { return e as Error } })()
    t.match(err?.message ?? 'no error', re, JSON.stringify(env))
    t.notMatch(err?.message ?? '', /hunter2/, 'no secret echoed')
  }
})
