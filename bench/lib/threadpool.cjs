// Preloaded (`node --require`) into every sidecar process of the benchmark, so
// that libuv's threadpool gets the size the hg-sidecar executable (dist/cli/bin.cjs)
// gives it: the bench measures what the CLI runs. `npm run bench` preloads it into
// run.mjs too (seeding mints thousands of hashes). It must be CommonJS: see
// src/cli/threadpool.cts.
'use strict'
require('../../dist/cli/threadpool.cjs').sizeThreadpool()
