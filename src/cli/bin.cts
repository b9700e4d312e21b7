#!/usr/bin/env node
// The hg-sidecar executable. CommonJS on purpose: it sizes libuv's threadpool
// (src/threadpool.cts says why that must happen before any ES module loads), then
// hands over to the CLI proper.
import threadpool = require('../threadpool.cjs')

threadpool.sizeThreadpool()
import('./index.js').catch((err: unknown) => {
  process.stderr.write(`hg-sidecar: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
