import t from 'tap'
import { createLogger, lazyChildLogger, type Logger } from '../../src/logger.js'
import { captureLogs, startStack } from '../helpers/stack.js'

/** A logger at `level` whose child() calls are counted. */
function counted (level: string): { log: Logger, children: () => number, records: () => Array<Record<string, unknown>> } {
  const { stream, capture } = captureLogs()
  const log = createLogger(level, stream)
  let n = 0
  const child = log.child
  // Children inherit this property: `this` keeps grandchildren under their own parent.
  log.child = function (this: Logger, ...args: Parameters<Logger['child']>) {
    n++
    return child.apply(this, args)
  } as Logger['child']
  return { log, children: () => n, records: () => capture.records() }
}

// pino writes through sonic-boom-like streams asynchronously; a turn lets the capture see it.
const settle = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

t.test('a request logger costs no pino child until it logs at an enabled level', async t => {
  const { log, children, records } = counted('warn')
  const req = lazyChildLogger(log, { reqId: 'req-1' }, {})
  req.info('not at warn')
  req.debug({ a: 1 }, 'nor this')
  req.trace('nor this')
  t.equal(children(), 0, 'disabled levels make no child')
  t.equal(req.level, 'warn')
  t.notOk(req.isLevelEnabled('info'))
  t.ok(req.isLevelEnabled('error'))
  t.match(req.bindings(), { reqId: 'req-1' }, 'bindings answer without a child')

  req.warn({ code: 'X' }, 'upstream failed')
  req.error('second line')
  await settle()
  t.equal(children(), 1, 'the first enabled call makes the child, once')
  const lines = records()
  t.equal(lines.length, 2)
  t.match(lines[0], { level: 40, reqId: 'req-1', code: 'X', msg: 'upstream failed', service: 'hg-auth-sidecar' })
  t.match(lines[1], { level: 50, reqId: 'req-1', msg: 'second line' })
})

t.test('the lazy logger keeps what a pino child does: level changes, grandchildren, masking', async t => {
  const { log, records } = counted('warn')
  const req = lazyChildLogger(log, { reqId: 'req-2' }, {})
  req.level = 'info'
  t.equal(req.level, 'info', 'a level of its own')
  t.equal(log.level, 'warn', 'the parent keeps its level')
  req.info('now enabled')
  const grand = req.child({ step: 'auth' })
  grand.warn('from a grandchild')
  req.warn('a path /api/hg_pat_0123456789abcdef0123 with a credential shape')
  await settle()
  const lines = records()
  t.match(lines[0], { level: 30, reqId: 'req-2', msg: 'now enabled' })
  t.match(lines[1], { reqId: 'req-2', step: 'auth', msg: 'from a grandchild' })
  t.notMatch(String(lines[2]?.msg), /0123456789abcdef0123/, 'the masking hook still runs')

  const own = lazyChildLogger(log, { reqId: 'req-3' }, { level: 'debug' })
  t.equal(own.level, 'debug', 'a route log level makes the child at once')
})

t.test('in the sidecar: nothing logged for a served request at warn, and a failure line still carries its reqId', async t => {
  const env = await startStack(t, { config: { logLevel: 'warn', upstream: { url: 'http://127.0.0.1:9' } } })
  const pat = await env.mintPat()
  const res = await env.get('/api/scans', pat.token, { 'x-request-id': 'trace-lazy-1' })
  t.equal(res.statusCode, 502, 'the upstream is down')
  await settle()
  const failed = env.logs.records().filter(r => r.msg === 'upstream failed')
  t.equal(failed.length, 1)
  t.match(failed[0], { level: 40, reqId: 'trace-lazy-1' })
  t.equal(env.logs.records().filter(r => r.msg === 'request').length, 0, 'no request line below info')
})
