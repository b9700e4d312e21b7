// libuv's threadpool runs every bcrypt compare, so its size is the cold path's
// parallelism: one thread per CPU the process may use (the cores, or its
// container's CPU limit) unless the operator set UV_THREADPOOL_SIZE.
//
// libuv reads UV_THREADPOOL_SIZE once, when the pool first starts, and Node's
// ES module loader starts it to read the first module file. Setting the
// variable from an ES module is therefore too late (the pool already has
// libuv's default of 4 threads). This file is CommonJS so that bin.cjs can
// apply it before any ES module is loaded.
import cpus = require('../cpus.cjs')

/** libuv's own ceiling. */
const MAX_THREADS = 1024

/** One thread per CPU the process may use (the cores, or the cgroup CPU limit when lower: cpus.cts). */
function defaultThreadpoolSize (): number {
  return Math.min(MAX_THREADS, cpus.availableCpus())
}

/** Sets UV_THREADPOOL_SIZE to the CPUs when it is unset or empty; an operator's value is kept. Returns the value in effect. */
function sizeThreadpool (env: NodeJS.ProcessEnv = process.env): string {
  const set = env.UV_THREADPOOL_SIZE
  if (set === undefined || set.trim() === '') env.UV_THREADPOOL_SIZE = String(defaultThreadpoolSize())
  return env.UV_THREADPOOL_SIZE as string
}

export = { defaultThreadpoolSize, sizeThreadpool }
