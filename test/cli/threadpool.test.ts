import { readdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import threadpool from '../../src/threadpool.cjs'
import { request } from '../helpers/http.js'
import { spawnCli, stop, waitFor } from '../helpers/cli-process.js'
import { ROOT, startStack } from '../helpers/stack.js'

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
  const r = spawnCli(['serve'], { cwd: ROOT, env, dropNodeOptions: true })
  try {
    const ops = await waitFor(r, /ops\s+http:\/\/127\.0\.0\.1:(\d+)/, 30_000)
    t.equal((await request(Number(ops[1]), '/readyz')).statusCode, 200, 'serving')
    // Settled: the same count twice in a row.
    let last = -1
    for (let i = 0; i < 40; i++) {
      const n = readdirSync(`/proc/${r.child.pid}/task`).length
      if (n === last) return n
      last = n
      await sleep(100)
    }
    return last
  } finally {
    await stop(r)
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
