// libuv's threadpool runs every bcrypt compare, so its size is the cold path's
// parallelism: one thread per core unless the operator set UV_THREADPOOL_SIZE.
//
// libuv reads UV_THREADPOOL_SIZE once, when the pool first starts, and Node's
// ES module loader starts it to read the first module file. Setting the
// variable from an ES module is therefore too late (the pool already has
// libuv's default of 4 threads). This file is CommonJS so that bin.cjs can
// apply it before any ES module is loaded.
import os = require('node:os')

/** libuv's own ceiling. */
const MAX_THREADS = 1024

/** One thread per core (what availableParallelism() reports; set the variable under a container CPU limit). */
function defaultThreadpoolSize (): number {
  return Math.min(MAX_THREADS, Math.max(1, os.availableParallelism()))
}

/** Sets UV_THREADPOOL_SIZE to the cores when it is unset or empty; an operator's value is kept. Returns the value in effect. */
function sizeThreadpool (env: NodeJS.ProcessEnv = process.env): string {
  const set = env.UV_THREADPOOL_SIZE
  if (set === undefined || set.trim() === '') env.UV_THREADPOOL_SIZE = String(defaultThreadpoolSize())
  return env.UV_THREADPOOL_SIZE as string
}

export = { defaultThreadpoolSize, sizeThreadpool }
