import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { LOG_BUFFER_BYTES, LOG_FLUSH_MS, STDOUT_DESTINATION } from '../../src/logger.js'

// The process logger buffers stdout writes (src/logger.ts says why). What must hold:
// a quiet process still gets its line out on the timed flush, a busy one writes
// in chunks, and nothing is lost on a clean or an abrupt exit.
const LOGGER = fileURLToPath(new URL('../../dist/logger.js', import.meta.url))

/** Runs a script against the built logger; resolves with stdout and the chunk count. */
async function run (body: string): Promise<{ out: string, chunks: number, code: number | null }> {
  const script = `import { createLogger } from ${JSON.stringify(LOGGER)}\nconst log = createLogger('info')\n${body}`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  let chunks = 0
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); chunks++ })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  return { out, chunks, code }
}
const lines = (out: string): Array<Record<string, unknown>> => out.split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, unknown>)

t.test('the stdout destination is buffered, flushed by a timer of its own', async t => {
  t.match(STDOUT_DESTINATION, { dest: 1, sync: false, minLength: LOG_BUFFER_BYTES })
  t.notOk('periodicFlush' in STDOUT_DESTINATION, 'not sonic-boom\'s periodic flush: it writes even when nothing waits')
})

t.test('an idle process writes nothing: one line is one write, however long it idles after', async t => {
  // fs.write counted in the child (sonic-boom calls it through the fs module object);
  // the count goes out on stderr, which the logger does not use.
  const script = `import fs from 'node:fs'
let writes = 0
const real = fs.write
fs.write = function (...a) { writes++; return real.apply(this, a) }
const { createLogger } = await import(${JSON.stringify(LOGGER)})
const log = createLogger('info')
log.info('one line')
setTimeout(() => { fs.writeSync(2, 'writes=' + writes + '\\n'); process.exit(0) }, ${LOG_FLUSH_MS * 6})`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  await new Promise(resolve => child.on('close', resolve))
  t.match(lines(out), [{ msg: 'one line' }])
  t.equal(/writes=(\d+)/.exec(err)?.[1], '1', `one write in ${LOG_FLUSH_MS * 6} ms (${err.trim()})`)
})

t.test('a lone line reaches stdout on the timed flush, while the process runs on', async t => {
  // The child logs one short line and idles. The parent kills it with SIGKILL (no exit
  // flush) as soon as the line shows up, or after a generous 20 s: only a flush made
  // while the process was running can have put the line out.
  const script = `import { createLogger } from ${JSON.stringify(LOGGER)}\nconst log = createLogger('info')\nlog.info({ n: 1 }, 'lonely line')\nsetTimeout(() => {}, 60000)`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  const giveUp = setTimeout(() => child.kill('SIGKILL'), 20_000)
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString()
    if (out.includes('\n')) child.kill('SIGKILL')
  })
  const signal = await new Promise<NodeJS.Signals | null>(resolve => child.on('close', (_code, sig) => resolve(sig)))
  clearTimeout(giveUp)
  t.equal(signal, 'SIGKILL')
  t.match(lines(out), [{ msg: 'lonely line', n: 1 }])
})

t.test('many lines go out in far fewer writes, all of them, in order', async t => {
  const r = await run(`
for (let i = 0; i < 2000; i++) log.info({ i }, 'line')
await new Promise(resolve => log.flush(resolve))
`)
  const got = lines(r.out)
  t.equal(got.length, 2000)
  t.ok(got.every((l, i) => l.i === i), 'in order')
  t.ok(r.chunks < 2000 / 4, `${r.chunks} chunks for 2000 lines`)
})

t.test('an abrupt exit still flushes what was logged', async t => {
  const r = await run(`
log.warn({ step: 'last words' }, 'grace period over')
process.exit(3)
`)
  t.equal(r.code, 3)
  t.match(lines(r.out), [{ msg: 'grace period over', step: 'last words' }])
})
