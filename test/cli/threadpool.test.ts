import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import threadpool from '../../src/cli/threadpool.cjs'
import { request } from '../helpers/http.js'
import { CLI, ROOT, startStack } from '../helpers/stack.js'

const CORES = availableParallelism()

t.test('sizeThreadpool: one thread per core when unset or empty; an operator value is kept', async t => {
  const unset: NodeJS.ProcessEnv = {}
  t.equal(threadpool.sizeThreadpool(unset), String(CORES))
  t.equal(unset.UV_THREADPOOL_SIZE, String(CORES))
  const empty: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: ' ' }
  t.equal(threadpool.sizeThreadpool(empty), String(CORES))
  const chosen: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: '7' }
  t.equal(threadpool.sizeThreadpool(chosen), '7')
  t.equal(chosen.UV_THREADPOOL_SIZE, '7')
})

/**
 * The threads of a running `hg-sidecar serve` started by the real executable.
 * libuv starts all of its pool's threads at once, so with the same build and
 * config the counts of two runs differ by exactly the difference of their pools.
 */
async function serveThreads (t: Test, env: NodeJS.ProcessEnv): Promise<number> {
  // tap hooks spawn() to add NODE_OPTIONS=--import=<its process tracker>, an ES
  // module that would start the pool before bin.cjs runs: `env -u` drops it.
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, CLI, 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { out += c.toString() })
  const exited = new Promise(resolve => child.on('exit', resolve))
  try {
    const deadline = Date.now() + 30_000
    let ops: RegExpExecArray | null = null
    while (ops === null && Date.now() < deadline) {
      ops = /ops\s+http:\/\/127\.0\.0\.1:(\d+)/.exec(out)
      await sleep(50)
    }
    if (ops === null) throw new Error(`no banner:\n${out}`)
    t.equal((await request(Number(ops[1]), '/readyz')).statusCode, 200, 'serving')
    // Settled: the same count twice in a row.
    let last = -1
    for (let i = 0; i < 40; i++) {
      const n = readdirSync(`/proc/${child.pid}/task`).length
      if (n === last) return n
      last = n
      await sleep(100)
    }
    return last
  } finally {
    child.kill('SIGTERM')
    await exited
  }
}

t.test('the executable sizes libuv\'s threadpool before anything starts it', { skip: process.platform !== 'linux' && 'counts threads in /proc' }, async t => {
  const stack = await startStack(t, { listen: false })
  await stack.sidecar.close()
  const base: NodeJS.ProcessEnv = { ...stack.cliEnv(), UPSTREAM_URL: stack.upstream.url, HOST: '127.0.0.1', PORT: '0', OPS_PORT: '0', ADMIN_PORT: '0' }
  delete base.UV_THREADPOOL_SIZE
  const byDefault = await serveThreads(t, base)
  const atCores = await serveThreads(t, { ...base, UV_THREADPOOL_SIZE: String(CORES) })
  const atCoresPlus3 = await serveThreads(t, { ...base, UV_THREADPOOL_SIZE: String(CORES + 3) })
  t.comment(`threads: default ${byDefault}, at cores ${atCores}, at cores + 3 ${atCoresPlus3}`)
  t.equal(atCoresPlus3 - atCores, 3, 'the count of threads follows the pool size (the measure works)')
  if (CORES === 4) {
    // libuv's own default is 4: the two runs could not tell a sizing that did nothing.
    t.comment('skipped: unset = one thread per core is indistinguishable from libuv\'s default on a 4-core machine')
  } else {
    t.equal(byDefault, atCores, `unset, the pool has one thread per core (${CORES}), not libuv's default of 4`)
  }
})
